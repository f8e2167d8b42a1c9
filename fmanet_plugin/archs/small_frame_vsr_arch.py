"""basicsr's BasicVSR, IconVSR and BasicVSR++ on LR frames smaller than 64 x 64 (the demo data, CPU patches).

These networks align frames with basicsr's SpyNet, whose five-level pyramid needs inputs of at least 64 x 64
(SpyNet rescales frames to multiples of 32; at 32 its coarsest level is empty and ``F.interpolate`` fails), and
BasicVSR++ asserts LR inputs of at least 64 x 64. Their papers train on 64 x 64 LR patches of 180 x 320 frames;
the demo clips are 32 x 40 and the demo patches 24 x 24. The adapters below change nothing at 64 x 64 and
above; on smaller inputs:

* ``SmallFrameSpyNet`` (used by ``SmallFrameBasicVSR`` and ``SmallFrameIconVSR``) bilinearly resizes the two
  frames to at least 64 x 64 before basicsr's SpyNet, then resizes the flow back and rescales its vectors, which
  is what basicsr's SpyNet already does to reach a multiple of 32; the rest of the network runs at the input size.
* ``SmallFrameBasicVSRPlusPlus`` edge-pads (replicates) the LR frames on the bottom / right to 64 x 64 and crops
  the output, because BasicVSR++'s ``forward`` checks the size before computing its flows (padding costs compute:
  the whole network runs at 64 x 64).

Parameters and state-dict keys are basicsr's, so checkpoints load into basicsr's classes and back. Note that on a
machine without CUDA basicsr's ``BasicVSRPlusPlus`` builds no deformable alignment at all (``deform_align`` only
``if torch.cuda.is_available()``): trained on the CPU it is BasicVSR++ without DCN alignment (flow-warped
second-order propagation only), with fewer parameters than on a GPU.
"""

from __future__ import annotations

import os

from fmanet_plugin.utils.checkpoint import load_weights

import torch
import torch.nn.functional as F
from basicsr.archs.basicvsr_arch import BasicVSR, IconVSR
from basicsr.archs.basicvsrpp_arch import BasicVSRPlusPlus
from basicsr.archs.spynet_arch import SpyNet
from basicsr.utils.registry import ARCH_REGISTRY

SPYNET_MIN_SIZE = 64


class SmallFrameSpyNet(SpyNet):
    """basicsr's SpyNet that also accepts frames smaller than 64 x 64 (estimated on frames resized to 64)."""

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow (b, 2, h, w) in pixels, (x, y), from ``ref`` to ``supp`` (b, 3, h, w), as basicsr's SpyNet."""
        h, w = ref.shape[2:]
        if h >= SPYNET_MIN_SIZE and w >= SPYNET_MIN_SIZE:
            return super().forward(ref, supp)
        size = (max(h, SPYNET_MIN_SIZE), max(w, SPYNET_MIN_SIZE))
        ref, supp = (F.interpolate(x, size=size, mode='bilinear', align_corners=False) for x in (ref, supp))
        flow = F.interpolate(super().forward(ref, supp), size=(h, w), mode='bilinear', align_corners=False)
        return flow * flow.new_tensor([w / size[1], h / size[0]]).view(1, 2, 1, 1)


def _use_small_frame_spynet(net: torch.nn.Module, spynet_path: str | None) -> None:
    # Same modules, same keys: the pretrained SpyNet weights (if any) are loaded as by basicsr.
    net.spynet = SmallFrameSpyNet(spynet_path)


@ARCH_REGISTRY.register()
class SmallFrameBasicVSR(BasicVSR):
    """basicsr's ``BasicVSR`` (same arguments and weights) with ``SmallFrameSpyNet``."""

    def __init__(self, num_feat: int = 64, num_block: int = 15, spynet_path: str | None = None):
        super().__init__(num_feat, num_block, spynet_path)
        _use_small_frame_spynet(self, spynet_path)


@ARCH_REGISTRY.register()
class SmallFrameIconVSR(IconVSR):
    """basicsr's ``IconVSR`` (same arguments and weights) with ``SmallFrameSpyNet``.

    ``edvr_path`` is loaded as by basicsr (its ``params``, strictly, into ``self.edvr``), but a missing or
    mismatched file is reported in one line (made by ``tools/make_iconvsr_edvr.py``).
    """

    def __init__(
        self,
        num_feat: int = 64,
        num_block: int = 15,
        keyframe_stride: int = 5,
        temporal_padding: int = 2,
        spynet_path: str | None = None,
        edvr_path: str | None = None,
    ):
        if edvr_path and not os.path.isfile(edvr_path):
            raise FileNotFoundError(
                f"network_g.edvr_path: {edvr_path} not found (IconVSR's EDVR feature extractor: make it with "
                'tools/make_iconvsr_edvr.py, or set edvr_path: ~ for a random one)'
            )
        super().__init__(num_feat, num_block, keyframe_stride, temporal_padding, spynet_path, None)
        if edvr_path:
            load_weights(self.edvr, edvr_path, 'params')
        _use_small_frame_spynet(self, spynet_path)


@ARCH_REGISTRY.register()
class SmallFrameBasicVSRPlusPlus(BasicVSRPlusPlus):
    """basicsr's ``BasicVSRPlusPlus`` (same arguments and weights); inputs under 64 x 64 are edge-padded."""

    def forward(self, lqs: torch.Tensor) -> torch.Tensor:
        """Restore ``lqs`` (b, t, c, h, w) to (b, t, c, 4h, 4w)."""
        b, t, c, h, w = lqs.shape
        pad_h, pad_w = max(0, SPYNET_MIN_SIZE - h), max(0, SPYNET_MIN_SIZE - w)
        if not pad_h and not pad_w:
            return super().forward(lqs)
        padded = F.pad(lqs.reshape(b * t, c, h, w), (0, pad_w, 0, pad_h), mode='replicate')
        out = super().forward(padded.view(b, t, c, h + pad_h, w + pad_w))
        scale = out.shape[-1] // (w + pad_w)
        return out[..., : h * scale, : w * scale]
