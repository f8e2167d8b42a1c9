"""Tiled forward passes: a network run on overlapping spatial tiles of its input, outputs blended.

Tiling (:func:`tiled_forward`): the LR frames are cut into ``tile x tile`` patches overlapping by ``overlap``
pixels (the last patch of a row/column is aligned to the frame edge). Each patch's output is weighted by a
separable ramp that is 0 within ``overlap/4`` LR pixels of an edge shared with another patch, rises linearly to
1 at ``3*overlap/4`` and stays 1 elsewhere (frame borders are not ramped); the weighted outputs are summed and
normalised. A patch therefore contributes only to output pixels at least ``overlap/4`` LR pixels away from its
internal edges: for a network whose output at an LR position depends on inputs within ``R`` LR pixels (its
receptive radius), tiled and untiled outputs are equal whenever ``overlap >= 4 * R``. FMA-Net itself is not
local (its transposed attention pools over the whole patch and its warps move content by predicted flows), so
for it tiling is an approximation whose error shrinks with the overlap and the tile size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` overlap."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _edge_ramp(size: int, overlap: float, ramp_low: bool, ramp_high: bool) -> torch.Tensor:
    """1-D blending weights of a tile of ``size`` output pixels (see the module docstring)."""
    pos = torch.arange(size, dtype=torch.float64) + 0.5
    weight = torch.ones(size, dtype=torch.float64)
    if overlap > 0:
        for ramped, dist in ((ramp_low, pos), (ramp_high, size - pos)):
            if ramped:
                weight = weight * ((dist - overlap / 4) / (overlap / 2)).clamp(0, 1)
    return weight


def tiled_forward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    lq: torch.Tensor,
    scale: int,
    tile: int | None,
    overlap: int = 16,
) -> torch.Tensor:
    """Run ``forward`` on overlapping spatial tiles of ``lq`` and blend the outputs.

    Args:
        forward (Callable): Maps (b, t, c, h', w') LR frames to the (b, c, scale*h', scale*w') output.
        lq (Tensor): LR frames (b, t, c, h, w).
        scale (int): Output / input size ratio.
        tile (int | None): Tile size in LR pixels; ``None``/0 (or a tile covering the frame) runs one pass.
        overlap (int): Overlap of neighbouring tiles in LR pixels, ``0 <= overlap < tile``. Default: 16.

    Returns:
        Tensor: (b, c, scale*h, scale*w) float32 output.
    """
    h, w = lq.shape[-2:]
    if not tile or (tile >= h and tile >= w):
        return forward(lq).float()
    if not 0 <= overlap < tile:
        raise ValueError(f'tile overlap must be in [0, tile) = [0, {tile}), got {overlap}')
    tile_h, tile_w = min(tile, h), min(tile, w)
    out = weight_sum = None
    for y0 in tile_starts(h, tile_h, overlap):
        wy = _edge_ramp(tile_h * scale, overlap * scale, y0 > 0, y0 + tile_h < h)
        for x0 in tile_starts(w, tile_w, overlap):
            wx = _edge_ramp(tile_w * scale, overlap * scale, x0 > 0, x0 + tile_w < w)
            patch = forward(lq[..., y0 : y0 + tile_h, x0 : x0 + tile_w]).float()
            if out is None:
                out = patch.new_zeros(*patch.shape[:2], h * scale, w * scale)
                weight_sum = patch.new_zeros(h * scale, w * scale)
            weight = (wy[:, None] * wx[None, :]).to(patch)
            rows = slice(y0 * scale, (y0 + tile_h) * scale)
            cols = slice(x0 * scale, (x0 + tile_w) * scale)
            out[..., rows, cols] += patch * weight
            weight_sum[rows, cols] += weight
    return out / weight_sum
