"""Restoring centre frames with an FMA-Net-style model: tiling, autocast and colour order in one callable."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from fmanet_plugin.utils.runtime import autocast_context
from fmanet_plugin.utils.tiling import tiled_forward

import torch
from torch import nn

COLOR_ORDERS = ('rgb', 'bgr')


class CentreFrameRestorer:
    """Callable restoring centre frames with an FMA-Net-style model (tiling, autocast, colour order).

    Args:
        model (nn.Module): Model mapping (b, t, c, h, w) in [0, 1] to a dict with ``output`` (b, c, sh, sw)
            or directly to that tensor.
        scale (int): Upscaling factor.
        model_color (str): Channel order the model was trained on: ``'rgb'`` (BasicSR, or a released
            checkpoint converted with ``--rgb``) or ``'bgr'`` (a released checkpoint converted without it).
        tile (int | None): LR tile size (see :func:`tiled_forward`). Default: None.
        tile_overlap (int): Tile overlap in LR pixels. Default: 16.
        amp (str | None): ``'fp16'``/``'bf16'`` autocast on CUDA. Default: None.
    """

    def __init__(
        self,
        model: nn.Module,
        scale: int,
        model_color: str = 'rgb',
        tile: int | None = None,
        tile_overlap: int = 16,
        amp: str | None = None,
    ) -> None:
        if model_color not in COLOR_ORDERS:
            raise ValueError(f'model_color must be one of {COLOR_ORDERS}, got {model_color!r}')
        self.model = model.eval()
        self.scale = scale
        self.model_color = model_color
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.amp = amp
        self.device = next(model.parameters()).device
        if amp is not None and self.device.type != 'cuda':
            raise ValueError(f'--{amp} (autocast) is for CUDA devices; got device {self.device}')
        autocast_context(self.device, amp)  # rejects an unknown amp now rather than at the first frame
        # FMANet can skip the branches that only training needs when told which outputs are wanted
        accepts_outputs = 'outputs' in inspect.signature(model.forward).parameters
        self.forward_kwargs = {'outputs': ('output',)} if accepts_outputs else {}

    def _forward(self, lq: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.amp):
            out = self.model(lq, **self.forward_kwargs)
        return out['output'] if isinstance(out, Mapping) else out

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, input_color: str = 'rgb') -> torch.Tensor:
        """Restore the centre frame.

        Args:
            lq (Tensor): LR window (b, t, c, h, w) in [0, 1], channels in ``input_color`` order.
            input_color (str): ``'rgb'`` or ``'bgr'``. Default: ``'rgb'``.

        Returns:
            Tensor: (b, c, s*h, s*w) float32 on the model's device, channels in ``input_color`` order.
        """
        swap = input_color != self.model_color
        lq = lq.to(self.device)
        if swap:
            lq = lq.flip(2)
        out = tiled_forward(self._forward, lq, self.scale, self.tile, self.tile_overlap)
        return out.flip(1) if swap else out
