"""FMA-Net: flow-guided dynamic filtering and iterative feature refinement with multi-attention.

Youk, Oh, Kim, CVPR 2024 (arXiv 2401.03707). Joint video super-resolution and deblurring: from
``t = 2N+1`` blurry LR frames, predict the sharp HR centre frame. The registered :class:`FMANet` holds
Net_D and Net_R (:mod:`~fmanet_plugin.archs.fmanet_nets`, built from the blocks of
:mod:`~fmanet_plugin.archs.fmanet_blocks`) and runs them either module by module (the reference, which
reproduces the authors' released model; see ``tools/convert_official_ckpt.py`` for their checkpoints) or
through the fast executor (:mod:`~fmanet_plugin.archs.fmanet_fast`). Both read the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

from fmanet_plugin.archs.fmanet_config import FMANetConfig
from fmanet_plugin.archs.fmanet_fast import FastExecutor
from fmanet_plugin.archs.fmanet_nets import DegradationNet, RestorationNet, reference_forward

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

#: Values of ``FMANet(impl=...)``.
IMPLEMENTATIONS = ('fast', 'reference')


@ARCH_REGISTRY.register()
class FMANet(nn.Module):
    """FMA-Net: degradation learning network (Net_D) followed by the restoration network (Net_R).

    Args:
        in_channels, dim, ds_kernel_size, us_kernel_size, num_rdb, growth_rate, num_dense_layer, num_flow,
            num_frma, num_attn_block, num_heads, ffn_expansion_factor, bias, scale, num_seq: The hyper-parameters,
            documented and validated by :class:`~fmanet_plugin.archs.fmanet_config.FMANetConfig` (defaults: the
            released model); kept as keyword arguments for BasicSR option files. The record is ``self.config``.
        stage (int): 1 builds Net_D only (degradation learning); 2 builds Net_D and Net_R. Default: 2.
        impl (str): ``'fast'`` runs the modules through :class:`~fmanet_plugin.archs.fmanet_fast.FastExecutor`
            (same parameters, same outputs up to float round-off, ~2-3x faster on CPU with a fraction of the
            memory); ``'reference'`` runs the readable module-by-module forward. Checkpoints are
            interchangeable. Default: ``'fast'``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 90,
        ds_kernel_size: int = 20,
        us_kernel_size: int = 5,
        num_rdb: int = 12,
        growth_rate: int = 18,
        num_dense_layer: int = 4,
        num_flow: int = 9,
        num_frma: int = 4,
        num_attn_block: int = 2,
        num_heads: int = 6,
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        scale: int = 4,
        num_seq: int = 3,
        stage: int = 2,
        impl: str = 'fast',
    ) -> None:
        super().__init__()
        config = FMANetConfig(
            in_channels=in_channels,
            dim=dim,
            ds_kernel_size=ds_kernel_size,
            us_kernel_size=us_kernel_size,
            num_rdb=num_rdb,
            growth_rate=growth_rate,
            num_dense_layer=num_dense_layer,
            num_flow=num_flow,
            num_frma=num_frma,
            num_attn_block=num_attn_block,
            num_heads=num_heads,
            ffn_expansion_factor=ffn_expansion_factor,
            bias=bias,
            scale=scale,
            num_seq=num_seq,
        )
        if stage not in (1, 2):
            raise ValueError(f'FMANet: stage must be 1 (Net_D only) or 2 (Net_D and Net_R), got {stage}')
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f'FMANet: impl must be one of {IMPLEMENTATIONS}, got {impl!r}')
        self.config = config
        self.impl = impl
        self.in_channels, self.scale, self.num_seq, self.stage = in_channels, scale, num_seq, stage
        #: Runs ``impl='fast'``; replace it to change the memory budgets (``FastExecutor(MemoryBudgets(...))``).
        self.fast_executor = FastExecutor()
        self.net_d = DegradationNet(config)
        self.net_r = RestorationNet(config) if stage == 2 else None

    def forward(
        self, lq: torch.Tensor, gt: torch.Tensor | None = None, outputs: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Restore the centre frame.

        Args:
            lq (Tensor): Blurry LR frames of shape (b, t, c, h, w) in [0, 1].
            gt (Tensor | None): Sharp HR frames of shape (b, t, c, s*h, s*w); needed only for the
                re-synthesised LR frame ``recon`` and the warped HR frames ``hr_warp`` (training).
            outputs (Iterable[str] | None): Keys to return; None returns all of them. With ``impl='fast'``
                branches no requested key needs are skipped: ``outputs=('output',)`` is the inference
                mode (no temporal anchors, no Net_D image flow).

        Returns:
            dict[str, Tensor]: ``output`` (b, c, s*h, s*w) sharp HR centre frame (stage 2);
            ``recon`` (b, c, h, w) blurry LR centre frame re-synthesised from ``gt``; ``hr_warp``
            (b, t, c, s*h, s*w) ``gt`` warped to the centre; ``lr_warp`` (b, t, c, h, w) ``lq`` warped
            to the centre (stage 2); ``image_flow`` (b, t, 2, h, w) Net_D's image flow;
            ``anchor_d``/``anchor_r`` (b, t, c, h, w) temporal anchors of Net_D/Net_R.
        """
        self._check_inputs(lq, gt)
        wanted = self._wanted_outputs(gt, outputs)
        if self.impl == 'fast':
            return self.fast_executor(self.net_d, self.net_r, lq, gt, wanted)
        out = reference_forward(self.net_d, self.net_r, lq, gt)
        return {key: value for key, value in out.items() if key in wanted}

    def _wanted_outputs(self, gt: torch.Tensor | None, outputs: Iterable[str] | None) -> set[str]:
        available = {'image_flow', 'anchor_d'}
        if gt is not None:
            available |= {'recon', 'hr_warp'}
        if self.net_r is not None:
            available |= {'output', 'lr_warp', 'anchor_r'}
        if outputs is None:
            return available
        wanted = {outputs} if isinstance(outputs, str) else set(outputs)
        if not wanted <= available:
            raise ValueError(
                f'FMANet: outputs {sorted(wanted - available)} are not available '
                f'(stage {self.stage}, gt {"given" if gt is not None else "not given"}); available: {sorted(available)}'
            )
        return wanted

    def _check_inputs(self, lq: torch.Tensor, gt: torch.Tensor | None) -> None:
        expected = f'(b, {self.num_seq}, {self.in_channels}, h, w)'
        if lq.dim() != 5 or lq.shape[1] != self.num_seq or lq.shape[2] != self.in_channels:
            raise ValueError(f'FMANet: lq must have shape {expected}, got {tuple(lq.shape)}')
        if gt is not None:
            b, t, c, h, w = lq.shape
            want = (b, t, c, h * self.scale, w * self.scale)
            if tuple(gt.shape) != want:
                raise ValueError(
                    f'FMANet: gt must have shape {want} (scale {self.scale} x the lq size), got {tuple(gt.shape)}'
                )
