"""Fast schedule of the multi-attention blocks (part of ``FMANet(impl='fast')``).

The attention and feed-forward layers of a :class:`~fmanet_plugin.archs.fmanet_blocks.MultiAttentionBlock`
run in row chunks with exact one-row halos, so the 2x hidden-width maps and q, k, v never exist whole.
Channel attention folds the L2 normalisation of q and k into the (C/heads)^2 logits and merges the
output projection with the attention matrix. In place (CPU inference) ``Fw`` is updated in its own
memory; under autograd every layer is checkpointed.
"""

from __future__ import annotations

from fmanet_plugin.archs.fmanet_blocks import (
    ChannelLayerNorm,
    CrossChannelAttention,
    GatedFeedForward,
    MultiAttentionBlock,
    pointwise_matrix,
)
from fmanet_plugin.ops.chunked import ExecutionMode, conv3x3_rows
from fmanet_plugin.ops.pointwise import channel_major, weight_matmul

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def attention_block(
    block: MultiAttentionBlock,
    x: torch.Tensor,
    centre: torch.Tensor,
    kernel_query: torch.Tensor | None,
    mode: ExecutionMode,
    row_budget: int,
) -> torch.Tensor:
    """A multi-attention block on ``Fw``, updated in place in the in-place mode.

    Under autograd each attention and feed-forward is checkpointed: its inputs are kept and its internals
    (the 2x hidden-width maps, q, k, v) recomputed in the backward pass, a few percent of the step's FLOPs
    for most of the attention stage's activation memory. The recomputation gets this call's ``mode``.

    Args:
        block (MultiAttentionBlock): The block.
        x (Tensor): ``Fw`` (b, C, h, w), contiguous.
        centre (Tensor): Centre-frame features ``F0_c`` (b, C, h, w), the first attention's query source.
        kernel_query (Tensor | None): Kernel query ``k_D`` (b, C, h, w) of the degradation-aware attention.
        mode (ExecutionMode): Execution mode of the call.
        row_budget (int): Bytes of one row chunk's largest temporary.

    Returns:
        Tensor: The updated ``Fw`` (b, C, h, w).
    """
    queries = iter((centre, kernel_query))
    for norm, layer in block.residual_layers():
        if isinstance(layer, CrossChannelAttention):
            stage, args = attention_rows, (next(queries), mode, row_budget)
        else:
            stage, args = feed_forward_rows, (mode, row_budget)
        if mode.autograd:
            x = checkpoint(stage, layer, norm, x, *args, use_reentrant=False)
        else:
            x = stage(layer, norm, x, *args)
    return x


def attention_rows(
    attn: CrossChannelAttention,
    norm: ChannelLayerNorm,
    x: torch.Tensor,
    query_source: torch.Tensor,
    mode: ExecutionMode,
    row_budget: int,
) -> torch.Tensor:
    """``x + attn(norm(x), query_source)`` in row chunks (in place in the in-place mode); (b, C, h, w) contiguous.

    The L2 normalisation of q and k over the pixels is applied to the (C/heads)^2 logits (sums of squares
    and q k^T accumulate over the chunks), and the output projection is merged with the attention matrix
    into one per-sample (C, C) matrix applied to v.
    """
    b, c, h, w = x.shape
    heads = attn.num_heads
    w_q = pointwise_matrix(attn.to_q)
    w_kv, b_kv = pointwise_matrix(attn.to_kv), attn.to_kv.bias
    dw_w, dw_b = attn.to_kv_dw.weight, attn.to_kv_dw.bias
    logits = q_sq = k_sq = None
    values = []
    for lo, hi in mode.row_chunks(h, 4 * b * 4 * c * w, row_budget):
        a, z = max(lo - 1, 0), min(hi + 1, h)
        pixels = _norm_rows(norm, x, a, z, mode)
        q = _pointwise_rows(w_q, attn.to_q.bias, channel_major(query_source[:, :, a:z]), z - a, mode)
        q = conv3x3_rows(q, a, h, lo, hi, attn.to_q_dw.weight, attn.to_q_dw.bias, c)
        k = _pointwise_rows(w_kv[:c], None if b_kv is None else b_kv[:c], pixels, z - a, mode)
        k = conv3x3_rows(k, a, h, lo, hi, dw_w[:c], None if dw_b is None else dw_b[:c], c)
        v = _pointwise_rows(w_kv[c:], None if b_kv is None else b_kv[c:], pixels, z - a, mode)
        values.append(conv3x3_rows(v, a, h, lo, hi, dw_w[c:], None if dw_b is None else dw_b[c:], c))
        q = q.reshape(b, heads, c // heads, -1)
        k = k.reshape(b, heads, c // heads, -1)
        if mode.autocast:  # logits and norms in float32, as autocast runs softmax and normalisations
            q, k = q.float(), k.float()
        part, q_part, k_part = q @ k.transpose(-2, -1), q.square().sum(-1), k.square().sum(-1)
        if logits is None:
            logits, q_sq, k_sq = part, q_part, k_part
        else:
            logits, q_sq, k_sq = mode.add(logits, part), mode.add(q_sq, q_part), mode.add(k_sq, k_part)
    eps = 1e-12  # F.normalize's
    norms = q_sq.sqrt().clamp_min(eps).unsqueeze(-1) * k_sq.sqrt().clamp_min(eps).unsqueeze(-2)
    weights = torch.softmax(logits / norms * attn.temperature, dim=-1)  # (b, heads, c_q, c_v)
    proj = pointwise_matrix(attn.proj_out).view(c, heads, c // heads)
    mixed = torch.einsum('ohq,bhqv->bohv', proj, weights).reshape(b, c, c)
    bias = attn.proj_out.bias
    if mode.in_place:  # accumulate into x chunk by chunk: the full-size projection never exists
        lo = 0
        for v in values:
            rows = v.shape[2]
            for i in range(b):
                target = x[i, :, lo : lo + rows].reshape(c, -1)  # a view: x is contiguous
                target.addmm_(mixed[i], v[i].reshape(c, -1))
                if bias is not None:
                    target.add_(bias.view(-1, 1))
            lo += rows
        return x
    out = torch.bmm(mixed, torch.cat(values, dim=2).view(b, c, h * w))
    if bias is not None:
        out = out + bias.view(-1, 1)
    return x + out.view(b, c, h, w)


def feed_forward_rows(
    ffn: GatedFeedForward, norm: ChannelLayerNorm, x: torch.Tensor, mode: ExecutionMode, row_budget: int
) -> torch.Tensor:
    """``x + ffn(norm(x))`` in row chunks (the 2x hidden-width maps never exist whole), in place in the in-place
    mode; (b, C, h, w) contiguous. In place, a chunk's result is added only after the next chunk has read
    its halo row, which belongs to the previous chunk."""
    b, c, h, w = x.shape
    hidden = ffn.hidden_channels
    w_in, w_out = pointwise_matrix(ffn.project_in), pointwise_matrix(ffn.project_out)
    dw = ffn.dwconv
    outs = []
    for lo, hi in mode.row_chunks(h, 4 * b * 2 * hidden * w, row_budget):
        a, z = max(lo - 1, 0), min(hi + 1, h)
        expanded = _pointwise_rows(w_in, ffn.project_in.bias, _norm_rows(norm, x, a, z, mode), z - a, mode)
        gate, value = conv3x3_rows(expanded, a, h, lo, hi, dw.weight, dw.bias, dw.groups).chunk(2, dim=1)
        gated = mode.mul(F.gelu(gate), value)
        out = weight_matmul(w_out, gated.reshape(b, hidden, -1))
        if ffn.project_out.bias is not None:
            out = mode.add(out, ffn.project_out.bias.view(-1, 1))
        if mode.in_place and outs:
            (p_lo, p_hi), pending = outs.pop()
            x[:, :, p_lo:p_hi] += pending
        outs.append(((lo, hi), out.view(b, c, hi - lo, w)))
        del expanded, gate, value, gated, out
    if mode.in_place:
        (p_lo, p_hi), pending = outs.pop()
        x[:, :, p_lo:p_hi] += pending
        return x
    return x + torch.cat([o for _, o in outs], dim=2)


def _norm_rows(norm: ChannelLayerNorm, x: torch.Tensor, lo: int, hi: int, mode: ExecutionMode) -> torch.Tensor:
    """Channel layer norm (biased variance, eps 1e-5) of rows ``[lo, hi)`` of a contiguous (b, C, h, w) map,
    computed in that layout (reductions over the channel dimension): (b, C, rows*w)."""
    b, c = x.shape[:2]
    rows = x[:, :, lo:hi].reshape(b, c, -1)
    if mode.autocast:  # statistics in float32, as autocast runs layer_norm
        rows = rows.float()
    centred = rows - rows.mean(dim=1, keepdim=True)
    scale = torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + 1e-5)
    normalised = mode.mul(mode.mul(centred, scale), norm.weight.view(-1, 1))
    return mode.add(normalised, norm.bias.view(-1, 1))


def _pointwise_rows(
    weight: torch.Tensor, bias: torch.Tensor | None, features: torch.Tensor, rows: int, mode: ExecutionMode
) -> torch.Tensor:
    """1x1 convolution of (b, C, rows*w) features (any strides) -> (b, C_out, rows, w)."""
    y = weight_matmul(weight, features)
    if bias is not None:
        y = mode.add(y, bias.view(-1, 1))
    return y.view(y.shape[0], y.shape[1], rows, -1)
