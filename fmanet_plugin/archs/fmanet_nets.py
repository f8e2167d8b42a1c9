"""FMA-Net's two networks, Net_D and Net_R, and the reference forward of the whole model.

This is the readable module-by-module implementation (``FMANet(impl='reference')``); it reproduces the
authors' released model (``tests/test_fast_parity.py`` pins it to their outputs). The networks work on
``(b, c, t, h, w)`` tensors (the released 3-D convolution layout); :func:`reference_forward` takes and
returns BasicSR's ``(b, t, c, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmanet_plugin.archs.fmanet_blocks import RRDB, ConvHead, FRMABlock, PixelShuffleUpsampler, conv_frame
from fmanet_plugin.archs.fmanet_config import FMANetConfig
from fmanet_plugin.ops import fgdf_downsample, fgdf_upsample, warp_image
from fmanet_plugin.utils.phase_profile import phase

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DegradationOutputs:
    """What Net_D computes (shapes for ``t`` frames of ``h x w``, ``C`` channels, ``n`` flows, scale ``s``).

    Attributes:
        features (Tensor): Final features ``F`` (b, C, t, h, w).
        flow_masks (Tensor): Final flow-mask pairs ``f`` (b, 3n, t, h, w).
        kernels (Tensor): Degradation kernels ``K_D`` (b, k_d*k_d, t, h, w).
        image_flow_mask (Tensor): Image flow and occlusion logit (b, 3, t, h, w).
        anchor (Tensor): Temporal anchor (b, c, t, h, w).
        hr_warp (Tensor | None): HR frames warped to the centre (b, t, c, s*h, s*w), when given.
        recon (Tensor | None): Re-synthesised blurry LR centre frame (b, c, h, w), when HR frames are given.
    """

    features: torch.Tensor
    flow_masks: torch.Tensor
    kernels: torch.Tensor
    image_flow_mask: torch.Tensor
    anchor: torch.Tensor
    hr_warp: torch.Tensor | None = None
    recon: torch.Tensor | None = None


@dataclass
class RestorationOutputs:
    """What Net_R computes.

    Attributes:
        output (Tensor): Sharp HR centre frame (b, c, s*h, s*w).
        lr_warp (Tensor): LR frames warped to the centre (b, t, c, h, w).
        anchor (Tensor): Temporal anchor (b, c, t, h, w).
    """

    output: torch.Tensor
    lr_warp: torch.Tensor
    anchor: torch.Tensor


class DegradationNet(nn.Module):
    """Net_D: predicts motion-aware degradation kernels, image flows and temporal anchors.

    Args:
        config (FMANetConfig): Hyper-parameters.
    """

    def __init__(self, config: FMANetConfig) -> None:
        super().__init__()
        self.config = config
        dim, bias, flow_channels = config.dim, config.bias, config.flow_channels
        self.conv_first = conv_frame(config.in_channels, dim, bias)
        self.rrdb = RRDB(dim, config.num_rdb, config.growth_rate, config.num_dense_layer, bias)
        self.frma_blocks = nn.ModuleList(
            FRMABlock(config, first_flow=(i == 0), first_fw=(i == 0), degradation_aware=False)
            for i in range(config.num_frma)
        )
        self.image_flow_head = ConvHead(flow_channels, flow_channels, 3, bias)
        self.kernel_head = ConvHead(config.frame_channels, dim, config.ds_kernel_size**2, bias)
        self.anchor_head = ConvHead(dim, dim, config.in_channels, bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DegradationOutputs:
        """Args:
        x (Tensor): Blurry LR frames (b, c, t, h, w).
        y (Tensor | None): Sharp HR frames (b, c, t, s*h, s*w), for ``recon`` and ``hr_warp``.
        """
        b, _, t, h, w = x.shape
        scale = self.config.scale
        feat0 = F.leaky_relu(self.conv_first(x), 0.2)
        feat0 = self.rrdb(feat0)
        centre = feat0[:, :, t // 2]
        feat, flow_masks, feat_warped = feat0, None, None
        for block in self.frma_blocks:
            feat, flow_masks, feat_warped = block(feat, centre, flow_masks, feat_warped)
        kernels = self.kernel_head(feat_warped.view(b, -1, t, h, w))
        image_flow_mask = self.image_flow_head(flow_masks)
        out = DegradationOutputs(feat, flow_masks, kernels, image_flow_mask, self.anchor_head(feat))
        if y is not None:
            c, height, width = y.shape[1], y.shape[3], y.shape[4]
            frames = y.transpose(1, 2).reshape(b * t, c, height, width)
            flow_mask = image_flow_mask.transpose(1, 2).reshape(b * t, 3, h, w)
            hr_warp, hr_ones = warp_image(frames, flow_mask, scale)
            out.hr_warp = hr_warp.view(b, t, c, height, width)
            with phase('fgdf'):
                out.recon = fgdf_downsample(
                    out.hr_warp, kernels.transpose(1, 2), scale, hr_ones.view(b, t, 1, height, width)
                )
        return out


class RestorationNet(nn.Module):
    """Net_R: restores the sharp HR centre frame using Net_D's features, flows and degradation kernels.

    Args:
        config (FMANetConfig): Hyper-parameters.
    """

    def __init__(self, config: FMANetConfig) -> None:
        super().__init__()
        self.config = config
        dim, bias, flow_channels, in_channels = config.dim, config.bias, config.flow_channels, config.in_channels
        self.conv_first = conv_frame(in_channels + dim, dim, bias)
        self.rrdb = RRDB(dim, config.num_rdb, config.growth_rate, config.num_dense_layer, bias)
        self.flow_refine = ConvHead(flow_channels, flow_channels, flow_channels, bias)
        self.kernel_embed = ConvHead(config.ds_kernel_size**2, dim, dim, bias, temporal=True)
        self.frma_blocks = nn.ModuleList(
            FRMABlock(config, first_flow=False, first_fw=(i == 0), degradation_aware=True)
            for i in range(config.num_frma)
        )
        self.res_conv_in = nn.Conv2d(dim, dim, 3, padding=1, bias=bias)
        self.upsampler = PixelShuffleUpsampler(dim, bias)
        self.res_conv_out = nn.Conv2d(dim, in_channels, 3, padding=1, bias=bias)
        kernel_channels = config.scale**2 * config.us_kernel_size**2
        self.kernel_head = ConvHead(config.frame_channels, dim, kernel_channels, bias)
        self.image_flow_head = ConvHead(flow_channels, flow_channels, 3, bias)
        self.image_flow_refine = ConvHead(flow_channels + 2 * in_channels, flow_channels, 3, bias)
        self.anchor_head = ConvHead(dim, dim, in_channels, bias)

    def forward(
        self, x: torch.Tensor, features_d: torch.Tensor, flow_masks: torch.Tensor, degradation_kernels: torch.Tensor
    ) -> RestorationOutputs:
        """Args:
        x (Tensor): Blurry LR frames (b, c, t, h, w).
        features_d (Tensor): Net_D's final features (b, C, t, h, w).
        flow_masks (Tensor): Net_D's final flow-mask pairs (b, 3n, t, h, w).
        degradation_kernels (Tensor): Net_D's kernels (b, k_d*k_d, t, h, w).
        """
        b, c, t, h, w = x.shape
        feat0 = F.leaky_relu(self.conv_first(torch.cat((x, features_d), dim=1)), 0.2)
        feat0 = self.rrdb(feat0)
        centre = feat0[:, :, t // 2]
        flow_masks = self.flow_refine(flow_masks)
        kernel_feat = self.kernel_embed(degradation_kernels)
        feat, feat_warped = feat0, None
        for block in self.frma_blocks:
            feat, flow_masks, feat_warped = block(feat, centre, flow_masks, feat_warped, kernel_feat)

        residual = self.res_conv_out(self.upsampler(F.leaky_relu(self.res_conv_in(feat_warped), 0.2)))
        kernels = self.kernel_head(feat_warped.view(b, -1, t, h, w))
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        # The image flow is predicted in two steps: a first estimate warps x, then it is re-estimated
        # from the flows, the warped frames and the centre frame.
        coarse = self.image_flow_head(flow_masks)
        coarse_warp = self._warp_frames(frames, coarse)
        centre_rep = x[:, :, t // 2 : t // 2 + 1].expand(-1, -1, t, -1, -1)
        image_flow_mask = self.image_flow_refine(torch.cat((flow_masks, coarse_warp, centre_rep), dim=1))
        lr_warp = self._warp_frames(frames, image_flow_mask).transpose(1, 2)
        with phase('fgdf'):
            upsampled = fgdf_upsample(lr_warp, kernels.transpose(1, 2), self.config.scale)
        output = upsampled + residual
        return RestorationOutputs(output, lr_warp, self.anchor_head(feat))

    @staticmethod
    def _warp_frames(frames: torch.Tensor, flow_mask: torch.Tensor) -> torch.Tensor:
        """Warp (b*t, c, h, w) frames with a (b, 3, t, h, w) flow-mask; returns (b, c, t, h, w)."""
        b, _, t, h, w = flow_mask.shape
        warped, _ = warp_image(frames, flow_mask.transpose(1, 2).reshape(b * t, 3, h, w), with_ones=False)
        return warped.view(b, t, -1, h, w).transpose(1, 2)


def reference_forward(
    net_d: DegradationNet, net_r: RestorationNet | None, lq: torch.Tensor, gt: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Every output of :meth:`FMANet.forward <fmanet_plugin.archs.fmanet_arch.FMANet.forward>`, module by module.

    Args:
        net_d (DegradationNet): Net_D.
        net_r (RestorationNet | None): Net_R, or None (stage 1).
        lq (Tensor): Blurry LR frames (b, t, c, h, w).
        gt (Tensor | None): Sharp HR frames (b, t, c, s*h, s*w).

    Returns:
        dict[str, Tensor]: The outputs named in ``FMANet.forward``'s docstring that these inputs allow.
    """
    x = lq.transpose(1, 2)
    with phase('net_d'):
        d = net_d(x, None if gt is None else gt.transpose(1, 2))
    out = {'image_flow': d.image_flow_mask[:, :2].transpose(1, 2), 'anchor_d': d.anchor.transpose(1, 2)}
    if gt is not None:
        out['recon'], out['hr_warp'] = d.recon, d.hr_warp
    if net_r is not None:
        with phase('net_r'):
            r = net_r(x, d.features, d.flow_masks, d.kernels)
        out.update(output=r.output, lr_warp=r.lr_warp, anchor_r=r.anchor.transpose(1, 2))
    return out
