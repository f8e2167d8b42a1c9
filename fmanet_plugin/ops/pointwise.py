"""1x1 convolutions as matrix products: of concatenations without concatenating, and of frames folded into channels.

A 1x1 convolution of a channel concatenation is the sum of the convolutions of its parts with the
matching column blocks of the weight, so growing concatenations never need to exist. These helpers
choose the GEMM orientation and memory layout (pixel-major for channels-last maps) and, in the in-place
mode of :class:`~fmanet_plugin.ops.chunked.ExecutionMode`, accumulate into existing buffers.
"""

from __future__ import annotations

from collections.abc import Iterable

from fmanet_plugin.ops.chunked import ExecutionMode, FrameGroups

import torch
import torch.nn.functional as F


def pixel_major(x: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) channels-last map -> (n*h*w, c) pixel-major view."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def channel_major(x: torch.Tensor) -> torch.Tensor:
    """(b, C, rows, w) map in either memory format -> (b, C, rows*w), a (possibly transposed) view."""
    b, c = x.shape[:2]
    if x.is_contiguous():
        return x.reshape(b, c, -1)
    return x.permute(0, 2, 3, 1).reshape(b, -1, c).transpose(1, 2)


def frame_matrix(frame: torch.Tensor) -> torch.Tensor:
    """(C, h, w) frame in either memory format -> (C, h*w) matrix view."""
    if frame.is_contiguous():
        return frame.reshape(frame.shape[0], -1)
    return pixel_major(frame[None]).t()


def weight_matmul(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x[i]`` for a (c_out, c_in) weight and (n, c_in, p) matrices (any strides): (n, c_out, p).

    A GEMM whose output has the pixels contiguous, the fast orientation for these shapes (``torch.matmul``
    would fold the batch into the pixels and produce the transposed, slower orientation)."""
    if x.shape[0] == 1:
        return torch.mm(weight, x[0]).unsqueeze(0)
    return torch.bmm(weight.unsqueeze(0).expand(x.shape[0], -1, -1), x)


def conv1x1_flat(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """1x1 convolution with a (c_out, c_in) weight of a (n, c_in, h, w) map in either memory format:
    (n, c_out, h*w), contiguous."""
    return weight_matmul(weight, channel_major(x))


def pointwise_sum(
    parts: list[torch.Tensor],
    weights: list[torch.Tensor],
    mode: ExecutionMode,
    pixel_chunk: int,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    acc: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """1x1 convolution of the channel concatenation of channels-last maps, without concatenating.

    ``sum_i conv1x1(parts[i], weights[i]) + bias + residual + acc``. In place the result is written into
    ``acc``, ``out`` or a new channels-last map, in chunks of ``pixel_chunk`` pixels (the GEMM operands stay
    in cache). Every output pixel depends on the same input pixel only, so ``out`` may be one of the inputs.

    Args:
        parts (list[Tensor]): (n, c_i, h, w) channels-last maps.
        weights (list[Tensor]): (c_out, c_i) weights.
        mode (ExecutionMode): Out of place, the terms are plain convolutions and additions.
        pixel_chunk (int): Pixels per GEMM in place.
        bias (Tensor | None): (c_out,) bias.
        residual (Tensor | None): (n, c_out, h, w) channels-last map to add.
        acc (Tensor | None): (n, c_out, h, w) channels-last accumulator to add (and overwrite in place).
        out (Tensor | None): (n, c_out, h, w) channels-last destination (in place only).

    Returns:
        Tensor: (n, c_out, h, w), channels-last in place.
    """
    n, _, h, w = parts[0].shape
    if not mode.in_place:
        y = acc
        for part, weight in zip(parts, weights):
            term = F.conv2d(part, weight[:, :, None, None])
            y = term if y is None else y + term
        y = y if bias is None else y + bias.view(-1, 1, 1)
        return y if residual is None else y + residual
    flats = [pixel_major(p) for p in parts]
    res = None if residual is None else pixel_major(residual)
    if acc is not None:
        out = acc
    elif out is None:
        out = parts[0].new_empty((n, h, w, weights[0].shape[0])).permute(0, 3, 1, 2)
    out_flat = pixel_major(out)
    aliased = acc is None and any(p.data_ptr() == out.data_ptr() for p in parts)
    for s in range(0, out_flat.shape[0], pixel_chunk):
        e = s + pixel_chunk
        o = out_flat[s:e]
        first = 0
        if acc is None:
            if aliased:  # a GEMM cannot write over its operand: use a chunk-sized temporary
                o = torch.mm(flats[0][s:e], weights[0].t())
            else:
                torch.mm(flats[0][s:e], weights[0].t(), out=o)
            first = 1
        for f, weight in zip(flats[first:], weights[first:]):
            o.addmm_(f[s:e], weight.t())
        if bias is not None:
            o.add_(bias)
        if res is not None:
            o.add_(res[s:e])
        if aliased:
            out_flat[s:e] = o
    return out


def fold_frames(
    feats: Iterable[torch.Tensor],
    groups: FrameGroups,
    weight: torch.Tensor,
    mode: ExecutionMode,
    init: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """1x1 convolution of each sample's frames folded into channels (channel ``c * t + frame``), plus ``init``.

    The fold is never materialised: frame ``k``'s features meet the weight columns ``k, k + t, ...``.

    Args:
        feats (Iterable[Tensor]): Per-group (frames, C, h, w) features, consumed one group at a time.
        groups (FrameGroups): Their grouping.
        weight (Tensor): (C_out, C * t) weight of the folded input.
        mode (ExecutionMode): Arithmetic mode.
        init (Tensor | None): (b, C_out, h*w) term to add.
        bias (Tensor | None): (C_out,) bias.

    Returns:
        Tensor: (b, C_out, h*w), contiguous.
    """
    t = groups.num_seq
    acc = init
    for (s, e), feat in zip(groups.bounds, feats):
        for k in range(t):
            first = (k - s) % t
            if s + first >= e:
                continue
            part = conv1x1_flat(weight[:, k::t], feat[first::t])
            samples = torch.arange(s + first, e, t) // t
            if len(samples) == groups.batch:
                acc = part if acc is None else mode.add(acc, part)
                continue
            if acc is None:
                acc = part.new_zeros((groups.batch, *part.shape[1:]))
            acc = mode.index_add(acc, samples, part)
    if bias is not None:
        acc = mode.add(acc, bias.view(1, -1, 1))
    return acc


def fold_frames_into(
    out: torch.Tensor,
    feats: Iterable[torch.Tensor | Iterable[tuple[int, torch.Tensor]]],
    groups: FrameGroups,
    weight: torch.Tensor,
    pixel_chunk: int,
    bias: torch.Tensor | None = None,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`fold_frames` written in place into ``out`` (b, C_out, h, w), without autograd.

    Args:
        out (Tensor): (b, C_out, h, w) contiguous destination.
        feats (Iterable): Per group, its (frames, C, h, w) tensor, or an iterable of ``(c0, piece)``: the
            group's channels ``c0 ...`` as a (frames, C_piece, h, w) tensor (so a group need not exist whole).
        groups (FrameGroups): Their grouping.
        weight (Tensor): (C_out, C * t) weight of the folded input.
        pixel_chunk (int): Pixels per GEMM of the ``previous`` product.
        bias (Tensor | None): (C_out,) bias.
        previous (Tensor | None): (C_out, C_out) matrix: ``out``'s current content is then a further input
            and is replaced by ``previous @ out`` first, pixel chunk by pixel chunk.

    Returns:
        Tensor: ``out``.
    """
    b, c = out.shape[:2]
    flat = out.view(b, c, -1)
    if previous is None:
        flat.zero_()
    else:
        for i in range(b):
            for s in range(0, flat.shape[2], pixel_chunk):
                chunk = flat[i, :, s : s + pixel_chunk]
                chunk.copy_(previous @ chunk)
    t = groups.num_seq
    for (s, e), pieces in zip(groups.bounds, feats):
        for c0, piece in [(0, pieces)] if torch.is_tensor(pieces) else pieces:
            for j in range(s, e):
                columns = weight[:, j % t :: t][:, c0 : c0 + piece.shape[1]]
                flat[j // t].addmm_(columns, frame_matrix(piece[j - s]))
            del piece  # (loop variables would keep the last piece alive while the next is computed)
        del pieces
    if bias is not None:
        flat.add_(bias.view(1, -1, 1))
    return out
