"""Fast schedule of FMA-Net's convolutional layers (part of ``FMANet(impl='fast')``).

Each function computes what the matching reference module computes, on a frame batch ``(n, C, h, w)``
(channels-last in the in-place mode), up to float round-off:

- Dense blocks keep running pre-activation sums instead of re-copying growing concatenations, and the
  RRDB accumulates its fusion over the RDB outputs as they appear (a convolution of a concatenation is
  the sum of the convolutions of its parts).
- Net_R's output stage (restoration kernel head, FGDF upsampling, residual upsampler) runs in LR row
  chunks with exact halos.
- Without ``gt`` and autograd, Net_D's kernels ``K_D`` are consumed only by Net_R's first (linear)
  kernel-embedding convolution, so the two compose into one 5x5x3 convolution of the kernel head's
  hidden features: a third of the FLOPs and no ``k_d**2``-channel tensor.
"""

from __future__ import annotations

from fmanet_plugin.archs.fmanet_blocks import RDB, RRDB, ConvHead, pointwise_matrix
from fmanet_plugin.archs.fmanet_nets import RestorationNet
from fmanet_plugin.ops import fgdf_upsample_rows
from fmanet_plugin.ops.chunked import (
    ExecutionMode,
    FrameGroups,
    conv3d_frames,
    conv3d_frames_weights,
    conv_rows,
    frame_conv,
)
from fmanet_plugin.ops.pointwise import pointwise_sum
from fmanet_plugin.utils.phase_profile import phase

import torch
import torch.nn.functional as F


def leaky_relu_(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) in place, for temporaries only: under autograd it then saves its output (which the
    next layer saves anyway) instead of its input."""
    return F.leaky_relu(x, 0.2, inplace=True)


def conv_head(head: ConvHead, x: torch.Tensor) -> torch.Tensor:
    """A per-frame :class:`ConvHead` (conv, LeakyReLU, conv) on a frame batch (n, c, h, w)."""
    return frame_conv(head.output_conv, leaky_relu_(frame_conv(head.hidden_conv, x)))


def rrdb_forward(
    rrdb: RRDB, x: torch.Tensor, mode: ExecutionMode, pixel_chunk: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """RRDB with the fusion 1x1 convolution accumulated over the RDB outputs as they are produced.

    Args:
        rrdb (RRDB): The block.
        x (Tensor): Frame batch (n, C, h, w).
        mode (ExecutionMode): Execution mode of the call.
        pixel_chunk (int): Pixels per GEMM of the 1x1 convolutions.
        out (Tensor | None): In place, the destination (must not overlap ``x``).

    Returns:
        Tensor: (n, C, h, w).
    """
    dim = x.shape[1]
    fusion = pointwise_matrix(rrdb.fusion)
    out = out if mode.in_place else None
    acc, feat = None, x
    for i, rdb in enumerate(rrdb.rdbs):
        # RDB outputs overwrite their input in place, except the RRDB's own input
        feat = rdb_forward(rdb, feat, mode, pixel_chunk, None if i == 0 else feat)
        bias = rrdb.fusion.bias if i == 0 else None
        # the fusion sum accumulates in the destination, which is free until the very end
        first_out = out if acc is None else None
        acc = pointwise_sum(
            [feat], [fusion[:, i * dim : (i + 1) * dim]], mode, pixel_chunk, bias, acc=acc, out=first_out
        )
    del feat
    if out is not None:
        return torch.add(frame_conv(rrdb.conv, acc), x, out=out)
    return mode.add(frame_conv(rrdb.conv, acc), x)


def rdb_forward(
    rdb: RDB, x: torch.Tensor, mode: ExecutionMode, pixel_chunk: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """RDB without growing concatenations: every new tensor is convolved once for all later dense layers.

    Dense layer ``i`` sees ``cat(x, o_0, ..., o_{i-1})``; its pre-activation is the sum of the
    convolutions of the parts with the matching input-channel slices of its weight. ``x``'s share of all
    layers is one convolution; each ``o_j``'s share of the later layers is another.

    Args:
        rdb (RDB): The block.
        x (Tensor): Frame batch (n, C, h, w).
        mode (ExecutionMode): Execution mode of the call.
        pixel_chunk (int): Pixels per GEMM of the fusion.
        out (Tensor | None): In place, the destination; may be ``x`` itself.

    Returns:
        Tensor: (n, C, h, w).
    """
    dim = x.shape[1]
    weights = rdb.dense_weights()
    growth = weights[0].shape[0]
    pending = F.conv2d(x, torch.cat([wt[:, :dim] for wt in weights]), rdb.dense_bias(), padding=1)
    outs = []
    for j in range(len(weights)):
        current, rest = pending.split([growth, pending.shape[1] - growth], dim=1)
        # a copy, activated in place: autograd then keeps o_j (needed anyway), not `pending`
        outs.append(leaky_relu_(current.clone()))
        lo = dim + j * growth
        if j + 1 < len(weights):
            later = torch.cat([wt[:, lo : lo + growth] for wt in weights[j + 1 :]])
            pending = mode.add(F.conv2d(outs[-1], later, padding=1), rest)
        del current, rest
    fusion = pointwise_matrix(rdb.fusion)
    if mode.in_place:  # the fusion accumulates over the parts, so their concatenation is never needed
        slices = [fusion[:, dim + j * growth : dim + (j + 1) * growth] for j in range(len(outs))]
        parts, part_weights = [x, *outs], [fusion[:, :dim], *slices]
    else:
        parts, part_weights = [x, torch.cat(outs, dim=1)], [fusion[:, :dim], fusion[:, dim:]]
    return pointwise_sum(parts, part_weights, mode, pixel_chunk, rdb.fusion.bias, x, out=out)


def composed_kernel_embedding(
    kernel_head: ConvHead,
    kernel_embed: ConvHead,
    hidden: list[torch.Tensor],
    groups: FrameGroups,
    mode: ExecutionMode,
) -> list[torch.Tensor]:
    """``kernel_embed.hidden_conv(K_D)`` without ``K_D`` (in place only).

    ``K_D = kernel_head.output_conv(hidden)`` (3x3 per frame), so the 3x3x3 embedding of it is one 5x5x3
    convolution of ``hidden`` away from the border; the outermost pixel ring, where ``K_D``'s zero padding
    differs from a padded ``hidden``, is computed the reference way.

    Args:
        kernel_head (ConvHead): Net_D's kernel head.
        kernel_embed (ConvHead): Net_R's kernel embedding.
        hidden (list[Tensor]): Grouped (frames, C, h, w) hidden features of the kernel head (after the LeakyReLU).
        groups (FrameGroups): Their grouping.
        mode (ExecutionMode): Execution mode of the call.

    Returns:
        list[Tensor]: Grouped (frames, C, h, w) pre-activation of the kernel embedding.
    """
    conv_b, conv_e = kernel_head.output_conv, kernel_embed.hidden_conv
    composed = compose_conv_weights(conv_e.weight, conv_b.weight.squeeze(2))
    tap_bias = None
    if conv_b.bias is not None:
        tap_bias = torch.einsum('oityx,i->ot', conv_e.weight.double(), conv_b.bias.double()).float()
    dest = groups.buffers(conv_e.out_channels, hidden[0], mode)
    out = conv3d_frames_weights(composed.float(), conv_e.bias, (2, 2), hidden, groups, mode, tap_bias, dest)
    _fix_border_ring(conv_b, conv_e, hidden, groups, mode, out)
    return out


def compose_conv_weights(w_outer: torch.Tensor, w_inner: torch.Tensor) -> torch.Tensor:
    """The 3-D weight of ``conv(w_outer)`` after a per-frame ``conv(w_inner)`` (cross-correlations, no padding).

    Equal to ``F.conv_transpose2d(w_outer[:, :, t], w_inner)`` for every temporal tap ``t``, computed in float64
    as one GEMM of all tap pairs plus nine shifted adds: float64 ``conv_transpose2d`` runs on torch's slow
    generic path.

    Args:
        w_outer (Tensor): Outer convolution's weight (C_o, C_m, t, k_o, k_o).
        w_inner (Tensor): Inner convolution's per-frame weight (C_m, C_i, k_i, k_i).

    Returns:
        Tensor: Composed weight (C_o, C_i, t, k_o + k_i - 1, k_o + k_i - 1), float64.
    """
    c_o, c_m, t, k_o, _ = w_outer.shape
    c_i, k_i = w_inner.shape[1], w_inner.shape[-1]
    k = k_o + k_i - 1
    # products[o, t, y, x, c, u, v] = sum_m w_outer[o, m, t, y, x] * w_inner[m, c, u, v]
    outer = w_outer.double().permute(0, 2, 3, 4, 1).reshape(-1, c_m)
    products = (outer @ w_inner.double().reshape(c_m, -1)).view(c_o, t, k_o, k_o, c_i, k_i, k_i)
    composed = w_outer.new_zeros(c_o, t, c_i, k, k, dtype=torch.float64)
    for y in range(k_o):
        for x in range(k_o):
            composed[:, :, :, y : y + k_i, x : x + k_i] += products[:, :, y, x]
    return composed.transpose(1, 2).contiguous()


def _fix_border_ring(
    conv_b: torch.nn.Conv3d,
    conv_e: torch.nn.Conv3d,
    hidden: list[torch.Tensor],
    groups: FrameGroups,
    mode: ExecutionMode,
    out: list[torch.Tensor],
) -> None:
    """Overwrite the one-pixel border of ``out`` (in place) with ``conv_e(conv_b(hidden))``."""
    h, w = hidden[0].shape[-2:]
    # (input slice of hidden, output index inside the slab's result, output slice of `out`)
    sides = [
        ((slice(None), slice(0, 3)), (slice(None), slice(0, 1)), (slice(None), slice(0, 1))),
        ((slice(None), slice(w - 3, w)), (slice(None), slice(2, 3)), (slice(None), slice(w - 1, w))),
        ((slice(0, 3), slice(None)), (slice(0, 1), slice(None)), (slice(0, 1), slice(None))),
        ((slice(h - 3, h), slice(None)), (slice(2, 3), slice(None)), (slice(h - 1, h), slice(None))),
    ]
    for (ry, rx), (sy, sx), (oy, ox) in sides:
        slab = [frame_conv(conv_b, f[:, :, ry, rx]) for f in hidden]
        ring = conv3d_frames(conv_e, slab, groups, mode)
        for o, r in zip(out, ring):
            o[:, :, oy, ox] = r[:, :, sy, sx]


def restore_rows(
    net_r: RestorationNet, fw: torch.Tensor, lr_warp: torch.Tensor, mode: ExecutionMode, row_budget: int
) -> torch.Tensor:
    """Net_R's output, FGDF upsampling + residual branch, in LR row chunks.

    Args:
        net_r (RestorationNet): Net_R.
        fw (Tensor): Its final ``Fw`` (b, C, h, w), contiguous.
        lr_warp (Tensor): LR frames warped to the centre (b, t, c, h, w).
        mode (ExecutionMode): Execution mode of the call.
        row_budget (int): Bytes of one row chunk's largest temporary.

    Returns:
        Tensor: The sharp HR centre frame (b, c, s*h, s*w).
    """
    config = net_r.config
    b, dim, h, w = fw.shape
    t, scale = config.num_seq, config.scale
    head, ups = net_r.kernel_head, net_r.upsampler
    res_in = leaky_relu_(frame_conv(net_r.res_conv_in, mode.to_channels_last(fw)))
    kernel_in = fw.view(b, dim // t, t, h, w).transpose(1, 2).reshape(b * t, dim // t, h, w)
    kernel_in = mode.to_channels_last(kernel_in)
    kernel_channels = head.output_conv.out_channels
    bytes_per_row = 4 * b * w * max(t * kernel_channels, dim * scale * scale)
    pad = config.us_kernel_size // 2
    padded = F.pad(lr_warp.reshape(b * t, -1, h, w), (pad, pad, pad, pad), mode='replicate')
    padded = padded.view(b, t, -1, h + 2 * pad, w + 2 * pad)
    outs = []
    for lo, hi in mode.row_chunks(h, bytes_per_row, row_budget):
        # kernel head: two 3x3 convs -> hidden rows [lo-1, hi+1)
        hidden_lo, hidden_hi = max(lo - 1, 0), min(hi + 1, h)
        hidden = leaky_relu_(conv_rows(kernel_in, 0, h, hidden_lo, hidden_hi, head.hidden_conv))
        kernels = conv_rows(hidden, hidden_lo, h, lo, hi, head.output_conv).view(b, t, -1, hi - lo, w)
        with phase('fgdf'):
            out = fgdf_upsample_rows(padded, kernels, lo, scale)
        outs.append(mode.add(out, _residual_rows(net_r, ups, res_in, lo, hi)))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _residual_rows(net_r: RestorationNet, ups: torch.nn.Module, res_in: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows ``[s*lo, s*hi)`` of the residual branch ``res_conv_out(upsampler(res_in))`` (s = 4)."""
    h = res_in.shape[2]
    # rows needed at each stage (exclusive ends), from the output back to the LR input
    o_lo, o_hi = 4 * lo, 4 * hi
    d_lo, d_hi = max(o_lo - 1, 0), min(o_hi + 1, 4 * h)  # conv3 output (4x)
    c_lo, c_hi = max(d_lo - 1, 0), min(d_hi + 1, 4 * h)  # shuffled conv2 output (4x)
    b_lo, b_hi = c_lo // 2, (c_hi + 1) // 2  # conv2 output rows (2x)
    a_lo, a_hi = max(b_lo - 1, 0), min(b_hi + 1, 2 * h)  # shuffled conv1 output (2x)
    l_lo, l_hi = a_lo // 2, (a_hi + 1) // 2  # conv1 output rows (LR)
    x = F.pixel_shuffle(leaky_relu_(conv_rows(res_in, 0, h, l_lo, l_hi, ups.conv1)), 2)
    x = F.pixel_shuffle(leaky_relu_(conv_rows(x, 2 * l_lo, 2 * h, b_lo, b_hi, ups.conv2)), 2)
    x = leaky_relu_(conv_rows(x, 2 * b_lo, 4 * h, d_lo, d_hi, ups.conv3))
    return conv_rows(x, d_lo, 4 * h, o_lo, o_hi, net_r.res_conv_out)
