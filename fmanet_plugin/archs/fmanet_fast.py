"""Fast execution of :class:`~fmanet_plugin.archs.fmanet_arch.FMANet` (``impl='fast'``).

The functions here run the reference modules' own parameters (same module tree, same state dict) through
a different schedule that computes the same function up to float round-off:

- Frames live in a "frame batch" ``(b*t, C, h, w)`` in channels-last memory format, split into groups of
  consecutive frames that fit :data:`CHUNK_BYTES` (one frame per group at 180x320), so no activation
  tensor exceeds glibc's 32 MiB mmap threshold and the allocator reuses memory instead of page-faulting.
  The ``[1, 3, 3]`` 3-D convolutions run as 2-D convolutions on that batch.
- A convolution of a concatenation is the sum of the convolutions of its parts. Dense blocks therefore
  keep running pre-activation sums instead of re-copying growing tensors, the RRDB accumulates its
  fusion over RDB outputs as they appear, the flow update convolves the (frame-independent) centre
  features once per sample, and the ``r`` fold of the warped features is a per-frame weight slice.
- Channel attention folds the L2 normalisation and the output projection into small matrices.
- The feed-forward networks, the restoration kernel head, the residual upsampler and the FGDF
  upsampling run in row chunks with exact halos (zero padding only at the image border).
- Without ``gt`` and without autograd, Net_D's kernels ``K_D`` are only consumed by Net_R's first
  kernel-embedding convolution; both are linear, so they are composed into one 5x5x3 convolution on the
  kernel head's hidden features (a third of the FLOPs, no 400-channel tensor), and the one-pixel border
  ring, where the composition would see padding differently, is recomputed the reference way.
- Outputs that were not requested (anchors, Net_D's image flow) are not computed.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from fmanet_plugin.ops import warp_image, warp_multi_flow
from fmanet_plugin.ops.fgdf import fgdf_downsample_chunked, fgdf_upsample_rows

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from fmanet_plugin.archs.fmanet_arch import (
        RDB,
        RRDB,
        CrossChannelAttention,
        DegradationNet,
        FMANet,
        FRMABlock,
        GatedFeedForward,
        MultiAttentionBlock,
        RestorationNet,
    )

#: Activation memory budget (bytes) of one frame group / row chunk. Below glibc's largest dynamic mmap
#: threshold (32 MiB), so buffers of this size are recycled from the heap.
CHUNK_BYTES = 24 * 2**20
#: Row-chunk budget of the attention and feed-forward stages (small enough to stay in cache).
ATTN_CHUNK_BYTES = 4 * 2**20
#: Row-chunk budget of the output stage (kernel head, FGDF upsampling, residual upsampler). Its temporaries
#: come last and fit the heap's free fragments at 8 MiB; at 24 MiB they grew the peak RSS by ~40-70 MB.
RESTORE_CHUNK_BYTES = 8 * 2**20
#: Pixels per GEMM chunk of the fused 1x1 convolutions.
PIXEL_CHUNK = 8192

_CL = torch.channels_last
# Set by forward() for the duration of a call: whether the inputs are on the CPU.
_ON_CPU: contextvars.ContextVar[bool] = contextvars.ContextVar('fmanet_fast_on_cpu', default=True)


def _inplace() -> bool:
    """Whether the CPU inference schedule applies: in-place updates, long-lived buffers, chunked stages.

    It needs autograd off (in-place updates would break the recorded graph), autocast off (buffers have one
    dtype, autocast picks one per op) and CPU tensors (on a GPU the chunking only adds kernel launches).
    """
    return not torch.is_grad_enabled() and _ON_CPU.get() and not _autocast()


def _autocast() -> bool:
    return torch.is_autocast_enabled('cpu') or torch.is_autocast_enabled('cuda')


def _add(acc: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``acc + other``, reusing ``acc``'s memory when autograd is off (``acc`` must be a temporary)."""
    return acc.add_(other) if _inplace() else acc + other


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) in place, for temporaries only: under autograd it then saves its output (which the
    next layer saves anyway) instead of its input."""
    return F.leaky_relu(x, 0.2, inplace=True)


def _conv(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None, bias: bool = True) -> torch.Tensor:
    """A per-frame ``[1, 3, 3]`` Conv3d (or a Conv2d) as a 2-D convolution of a frame batch.

    ``weight`` overrides the module's weight (e.g. an input-channel slice of it, already 4-D).
    """
    w = conv.weight if weight is None else weight
    if w.dim() == 5:
        w = w.squeeze(2)
    padding = conv.padding[-2:]
    return F.conv2d(x, w, conv.bias if bias else None, padding=padding, groups=conv.groups)


def _head(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``conv_head`` (conv, LeakyReLU, conv) on a frame batch."""
    return _conv(seq[2], _lrelu(_conv(seq[0], x)))


def _cl(x: torch.Tensor) -> torch.Tensor:
    """Channels-last copy for CPU inference and on GPUs (cuDNN's fast, tensor-core convolutions). CPU maps under
    autograd stay contiguous: oneDNN's backward passes are faster on them."""
    return x.contiguous(memory_format=_CL) if _inplace() or x.is_cuda else x


def _store(x: torch.Tensor, dest: torch.Tensor | None) -> torch.Tensor:
    """``x`` copied into ``dest`` when given (a long-lived buffer view), else ``x``."""
    return x if dest is None else dest.copy_(x)


class FrameGroups:
    """Consecutive groups of the ``b*t`` frames of a frame batch (frame ``j`` is sample ``j // t``, time ``j % t``).

    Args:
        batch (int): Samples ``b``.
        num_seq (int): Frames per sample ``t``.
        height (int): Frame height.
        width (int): Frame width.
        channels (int): Feature channels used to size the groups.
    """

    def __init__(self, batch: int, num_seq: int, height: int, width: int, channels: int) -> None:
        self.batch, self.num_seq = batch, num_seq
        per_group = max(1, CHUNK_BYTES // (4 * channels * height * width))
        total = batch * num_seq
        self.bounds = [(s, min(s + per_group, total)) for s in range(0, total, per_group)]

    def split(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(b*t, ...) tensor -> per-group views."""
        return [frames[s:e] for s, e in self.bounds]

    def frame(self, groups: list[torch.Tensor], j: int) -> torch.Tensor:
        """Frame ``j`` (1, ...) of a grouped tensor."""
        for (s, e), g in zip(self.bounds, groups):
            if s <= j < e:
                return g[j - s : j - s + 1]
        raise IndexError(j)

    def samples(self, group: int) -> torch.Tensor:
        """Sample index of every frame of a group."""
        s, e = self.bounds[group]
        return torch.arange(s, e) // self.num_seq

    def gather(self, groups: list[torch.Tensor]) -> torch.Tensor:
        """Grouped tensor -> one (b*t, ...) tensor."""
        return groups[0] if len(groups) == 1 else torch.cat(groups)

    def buffers(self, channels: int, like: torch.Tensor) -> list[torch.Tensor | None]:
        """Destinations for a long-lived grouped map: per-group views of one channels-last
        (b*t, channels, h, w) tensor (one allocation, outside the recycled heap), or Nones under autograd."""
        if not _inplace():
            return [None] * len(self.bounds)
        h, w = like.shape[-2:]
        full = like.new_empty((self.batch * self.num_seq, h, w, channels)).permute(0, 3, 1, 2)
        return self.split(full)


class Workspace:
    """Long-lived state of a network written in place when autograd is off: the centre features, ``Fw``,
    the kernel query and the flow-mask pairs, carved from one allocation. glibc maps it outside the heap,
    so it cannot pin the heap's fragments of the short-lived temporaries (which would grow the RSS).

    Args:
        groups (FrameGroups): Frame grouping.
        dim (int): Feature channels ``C``.
        flow_channels (int): Flow-mask channels ``3n``.
        like (Tensor): Any tensor with the frame size in its last two dimensions (dtype and device).
    """

    def __init__(self, groups: FrameGroups, dim: int, flow_channels: int, like: torch.Tensor) -> None:
        b, n = groups.batch, groups.batch * groups.num_seq
        h, w = like.shape[-2:]
        sizes = [b * dim * h * w] * 3 + [n * flow_channels * h * w]
        centre, fw, kernel_query, flows = like.new_empty(sum(sizes)).split(sizes)
        self.centre = centre.view(b, h, w, dim).permute(0, 3, 1, 2)
        self.fw = fw.view(b, dim, h, w)
        self.kernel_query = kernel_query.view(b, dim, h, w)
        self.flows = groups.split(flows.view(n, h, w, flow_channels).permute(0, 3, 1, 2))


def forward(model: FMANet, lq: torch.Tensor, gt: torch.Tensor | None, wanted: set[str]) -> dict[str, torch.Tensor]:
    """Fast :meth:`FMANet.forward`: same outputs as the reference for the keys in ``wanted``.

    Samples are processed in chunks that fit :data:`CHUNK_BYTES` (everything in FMA-Net is per sample).
    """
    token = _ON_CPU.set(lq.device.type == 'cpu')
    try:
        b, t, _, h, w = lq.shape
        per_chunk = max(1, CHUNK_BYTES // (4 * model.net_d.rrdb.fusion.out_channels * h * w))
        if b <= per_chunk or not _inplace():
            return _forward_samples(model, lq, gt, wanted)
        parts = [
            _forward_samples(model, lq[s : s + per_chunk], None if gt is None else gt[s : s + per_chunk], wanted)
            for s in range(0, b, per_chunk)
        ]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    finally:
        _ON_CPU.reset(token)


def _forward_samples(
    model: FMANet, lq: torch.Tensor, gt: torch.Tensor | None, wanted: set[str]
) -> dict[str, torch.Tensor]:
    b, t, c, h, w = lq.shape
    dim = model.net_d.rrdb.fusion.out_channels
    groups = FrameGroups(b, t, h, w, dim)
    frames = groups.split(lq.reshape(b * t, c, h, w))
    need_r = model.net_r is not None and bool(wanted & {'output', 'lr_warp', 'anchor_r'})
    need_image_flow = bool(wanted & {'image_flow', 'hr_warp', 'recon'})
    compose = need_r and gt is None and _inplace() and min(h, w) >= 5

    ws = Workspace(groups, dim, 3 * model.net_d.num_flow, lq) if _inplace() else None
    d = _net_d(model.net_d, frames, groups, ws, need_kernels=('recon' in wanted) or (need_r and not compose))
    out = {}
    if need_image_flow:
        flow_mask = groups.gather([_head(model.net_d.image_flow_head, f) for f in d['flow_masks']])
        flow_mask = flow_mask.contiguous()
        if 'image_flow' in wanted:
            out['image_flow'] = flow_mask[:, :2].reshape(b, t, 2, h, w)
        if gt is not None:
            scale = model.scale
            hr = gt.reshape(b * t, c, scale * h, scale * w)
            hr_warp, hr_ones = warp_image(hr, flow_mask, scale)
            hr_warp = hr_warp.view(b, t, c, scale * h, scale * w)
            out['hr_warp'] = hr_warp
            if 'recon' in wanted:
                kernels = groups.gather(d['kernels']).reshape(b, t, -1, h, w)
                out['recon'] = fgdf_downsample_chunked(
                    hr_warp, kernels, scale, hr_ones.view(b, t, 1, scale * h, scale * w), CHUNK_BYTES
                )
    if 'anchor_d' in wanted:
        anchor = groups.gather([_head(model.net_d.anchor_head, f) for f in d['features']])
        out['anchor_d'] = anchor.contiguous().view(b, t, c, h, w)
    if need_r:
        embed = model.net_r.kernel_embed
        if compose:
            kernel_feat = _composed_kernel_embedding(model.net_d.kernel_head, embed, d.pop('kernel_hidden'), groups)
        else:
            d.pop('kernel_hidden')
            kernel_feat = _conv3d_frames(embed[0], d.pop('kernels'), groups)
        kernel_feat = [_lrelu(k) for k in kernel_feat]
        kernel_feat = _conv3d_frames(embed[2], kernel_feat, groups, groups.buffers(embed[2].out_channels, lq))
        out.update(_net_r(model.net_r, frames, groups, d, kernel_feat, wanted, ws))
    return {k: v for k, v in out.items() if k in wanted}


def _net_d(
    net_d: DegradationNet, frames: list[torch.Tensor], groups: FrameGroups, ws: Workspace | None, need_kernels: bool
) -> dict:
    """Net_D on grouped frames: ``features``/``flow_masks`` (grouped), ``kernel_hidden`` (grouped hidden layer
    of the kernel head) and, if ``need_kernels``, ``kernels`` K_D (grouped)."""
    dest = groups.buffers(net_d.rrdb.fusion.out_channels, frames[0])
    feats = [_rrdb(net_d.rrdb, _lrelu(_conv(net_d.conv_first, _cl(f))), d) for f, d in zip(frames, dest)]
    centre = _centre(feats, groups, None if ws is None else ws.centre)
    state = {'flows': None, 'fw': None}
    for block in net_d.frma_blocks:
        _frma(block, feats, groups, centre, state, ws=ws)
    head = net_d.kernel_head
    dest = groups.buffers(head[0].out_channels, frames[0])
    hidden = [_lrelu(_store(_conv(head[0], f), d)) for f, d in zip(_split_frames(state.pop('fw'), groups), dest)]
    out = {'features': feats, 'flow_masks': state['flows'], 'kernel_hidden': hidden}
    if need_kernels:
        out['kernels'] = [_conv(net_d.kernel_head[2], f) for f in hidden]
    return out


def _net_r(
    net_r: RestorationNet,
    frames: list[torch.Tensor],
    groups: FrameGroups,
    d: dict,
    kernel_feat: list[torch.Tensor],
    wanted: set[str],
    ws: Workspace | None,
) -> dict[str, torch.Tensor]:
    b, t = groups.batch, groups.num_seq
    c, h, w = frames[0].shape[1:]
    feats = d.pop('features')
    for g, x in enumerate(frames):
        # Net_D's features of a frame are not needed once convolved: Net_R's replace them (in place).
        first = _lrelu(_conv(net_r.conv_first, torch.cat((_cl(x), feats[g]), dim=1)))
        feats[g] = _rrdb(net_r.rrdb, first, feats[g] if _inplace() else None)
    centre = _centre(feats, groups, None if ws is None else ws.centre)
    flows = d.pop('flow_masks')
    for g, f in enumerate(flows):
        flows[g] = _head(net_r.flow_refine, f) if ws is None else ws.flows[g].copy_(_head(net_r.flow_refine, f))
    state = {'flows': flows, 'fw': None}
    for block in net_r.frma_blocks:
        _frma(block, feats, groups, centre, state, kernel_feat, ws)
    flows, fw = state['flows'], state['fw']
    out = {}
    if 'anchor_r' in wanted:
        anchor = groups.gather([_head(net_r.anchor_head, f) for f in feats])
        out['anchor_r'] = anchor.contiguous().view(b, t, c, h, w)
    feats.clear()
    kernel_feat.clear()
    if not wanted & {'output', 'lr_warp'}:
        return out
    centre_x = torch.cat([groups.frame(frames, i * t + t // 2) for i in range(b)])
    lr_warp = []
    for g, (x, f) in enumerate(zip(frames, flows)):
        coarse = _head(net_r.image_flow_head, f).contiguous()
        coarse_warp = _cl(warp_image(x, coarse, with_ones=False)[0])
        refine_in = torch.cat((f, coarse_warp, _cl(centre_x[groups.samples(g)])), dim=1)
        flow_mask = _head(net_r.image_flow_refine, refine_in).contiguous()
        lr_warp.append(warp_image(x, flow_mask, with_ones=False)[0])
    lr_warp = groups.gather(lr_warp).view(b, t, c, h, w)
    out['lr_warp'] = lr_warp
    if 'output' in wanted:
        out['output'] = _restore(net_r, fw, lr_warp, t)
    return out


def _centre(feats: list[torch.Tensor], groups: FrameGroups, out: torch.Tensor | None = None) -> torch.Tensor:
    """Copy of the centre-frame features of every sample, (b, C, h, w) (into ``out`` when given)."""
    t = groups.num_seq
    frames = [groups.frame(feats, i * t + t // 2) for i in range(groups.batch)]
    if out is None:
        return torch.cat(frames)
    for i, f in enumerate(frames):
        out[i : i + 1].copy_(f)
    return out


def _split_frames(fw: torch.Tensor, groups: FrameGroups) -> list[torch.Tensor]:
    """``Fw`` (b, C, h, w) viewed per frame, channel ``c * t + frame``: grouped (frames, C / t, h, w)."""
    b, dim, h, w = fw.shape
    t = groups.num_seq
    frames = fw.reshape(b, dim // t, t, h, w).transpose(1, 2).reshape(b * t, dim // t, h, w)
    return [_cl(f) for f in groups.split(frames)]


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) channels-last map -> (n*h*w, c) pixel-major view."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _pointwise(
    parts: list[torch.Tensor],
    weights: list[torch.Tensor],
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    acc: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """1x1 convolution of the channel concatenation of channels-last maps, without concatenating.

    ``sum_i conv1x1(parts[i], weights[i]) + bias + residual + acc``. Without autograd the result is
    written into ``acc``, ``out`` or a new channels-last map, in pixel chunks of :data:`PIXEL_CHUNK` (the
    GEMM operands stay in cache). Every output pixel depends on the same input pixel only, so ``out`` may
    be one of the inputs.

    Args:
        parts (list[Tensor]): (n, c_i, h, w) channels-last maps.
        weights (list[Tensor]): (c_out, c_i) weights.
        bias (Tensor | None): (c_out,) bias.
        residual (Tensor | None): (n, c_out, h, w) channels-last map to add.
        acc (Tensor | None): (n, c_out, h, w) channels-last accumulator to add (and overwrite).
        out (Tensor | None): (n, c_out, h, w) channels-last destination (ignored under autograd).

    Returns:
        Tensor: (n, c_out, h, w) channels-last.
    """
    n, _, h, w = parts[0].shape
    if not _inplace():
        y = acc
        for part, wt in zip(parts, weights):
            term = F.conv2d(part, wt[:, :, None, None])
            y = term if y is None else y + term
        y = y if bias is None else y + bias.view(-1, 1, 1)
        return y if residual is None else y + residual
    flats = [_flat(p) for p in parts]
    res = None if residual is None else _flat(residual)
    if acc is not None:
        out = acc
    elif out is None:
        out = parts[0].new_empty((n, h, w, weights[0].shape[0])).permute(0, 3, 1, 2)
    out_flat = _flat(out)
    aliased = acc is None and any(p.data_ptr() == out.data_ptr() for p in parts)
    for s in range(0, out_flat.shape[0], PIXEL_CHUNK):
        e = s + PIXEL_CHUNK
        o = out_flat[s:e]
        first = 0
        if acc is None:
            if aliased:  # a GEMM cannot write over its operand: use a chunk-sized temporary
                o = torch.mm(flats[0][s:e], weights[0].t())
            else:
                torch.mm(flats[0][s:e], weights[0].t(), out=o)
            first = 1
        for f, wt in zip(flats[first:], weights[first:]):
            o.addmm_(f[s:e], wt.t())
        if bias is not None:
            o.add_(bias)
        if res is not None:
            o.add_(res[s:e])
        if aliased:
            out_flat[s:e] = o
    return out


def _rrdb(rrdb: RRDB, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """RRDB with the fusion 1x1 convolution accumulated over the RDB outputs as they are produced.

    Without autograd the result goes to ``out`` when given (it must not overlap ``x``).
    """
    dim = x.shape[1]
    fusion = rrdb.fusion.weight.view(dim, -1)
    use_out = out is not None and _inplace()
    acc, feat = None, x
    for i, rdb in enumerate(rrdb.rdbs):
        # RDB outputs overwrite their input in place (without autograd), except the RRDB's own input
        feat = _rdb(rdb, feat, None if i == 0 else feat)
        bias = rrdb.fusion.bias if i == 0 else None
        # the fusion sum accumulates in the destination, which is free until the very end
        first_out = out if use_out and acc is None else None
        acc = _pointwise([feat], [fusion[:, i * dim : (i + 1) * dim]], bias, acc=acc, out=first_out)
    del feat
    if use_out:
        return torch.add(_conv(rrdb.conv, acc), x, out=out)
    return _add(_conv(rrdb.conv, acc), x)


def _rdb(rdb: RDB, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """RDB without growing concatenations: every new tensor is convolved once for all later dense layers.

    Without autograd the result goes to ``out`` when given, which may be ``x`` itself.

    Dense layer ``i`` sees ``cat(x, o_0, ..., o_{i-1})``; its pre-activation is the sum of the
    convolutions of the parts with the matching input-channel slices of its weight. ``x``'s share of all
    layers is one convolution; each ``o_j``'s share of the later layers is another.
    """
    dim = x.shape[1]
    weights = [layer.weight.squeeze(2) for layer in rdb.dense_layers]
    growth = weights[0].shape[0]
    biases = [layer.bias for layer in rdb.dense_layers]
    bias = None if biases[0] is None else torch.cat(biases)
    pending = F.conv2d(x, torch.cat([wt[:, :dim] for wt in weights]), bias, padding=1)
    outs = []
    for j in range(len(weights)):
        current, rest = pending.split([growth, pending.shape[1] - growth], dim=1)
        # a copy, activated in place: autograd then keeps o_j (needed anyway), not `pending`
        outs.append(_lrelu(current.clone()))
        lo = dim + j * growth
        if j + 1 < len(weights):
            later = torch.cat([wt[:, lo : lo + growth] for wt in weights[j + 1 :]])
            pending = _add(F.conv2d(outs[-1], later, padding=1), rest)
        del current, rest
    fusion = rdb.fusion.weight.view(dim, -1)
    if _inplace():  # the fusion accumulates over the parts, so their concatenation is never needed
        slices = [fusion[:, dim + j * growth : dim + (j + 1) * growth] for j in range(len(outs))]
        return _pointwise([x, *outs], [fusion[:, :dim], *slices], rdb.fusion.bias, x, out=out)
    return _pointwise([x, torch.cat(outs, dim=1)], [fusion[:, :dim], fusion[:, dim:]], rdb.fusion.bias, x, out=out)


def _frma(
    block: FRMABlock,
    feats: list[torch.Tensor],
    groups: FrameGroups,
    centre: torch.Tensor,
    state: dict,
    kernel_feat: list[torch.Tensor] | None = None,
    ws: Workspace | None = None,
) -> None:
    """One FRMA block, updating ``feats`` (grouped ``F``, channels-last; list items replaced, or overwritten
    in place with a workspace) and ``state``: ``'flows'`` (grouped ``f``, None before Net_D's first block)
    and ``'fw'`` (``Fw`` (b, C, h, w) contiguous, None before the first block). With a workspace (no
    autograd) ``f``, ``Fw`` and the kernel query live in it and are updated in place."""
    dim = centre.shape[1]
    flows = state['flows']
    update = block.flow_update
    w_in = update[0].weight.squeeze(2)
    # The centre features are the same for every frame: convolve them once per sample.
    centre_term = F.conv2d(centre, w_in[:, :dim], update[0].bias, padding=1)
    new_flows = []
    for g in range(len(feats)):
        feats[g] = _rdb(block.rdb, feats[g], feats[g])
        step = _flow_step(block, feats[g], None if flows is None else flows[g], centre_term[groups.samples(g)])
        if ws is not None:
            new_flows.append(ws.flows[g].copy_(step) if flows is None else ws.flows[g].add_(step))
        else:
            new_flows.append(step if flows is None else step + flows[g])
        del step
    state['flows'] = new_flows
    del flows, centre_term

    fuse = block.fuse_warped.weight.view(dim, -1)
    t = groups.num_seq
    warped = (_warp(block, feats[g], new_flows[g]) for g in range(len(feats)))
    fw = state['fw']
    if ws is None:
        init = None if fw is None else _mm(fuse[:, :dim], fw)
        fw = _fold_frames(warped, groups, fuse[:, fuse.shape[1] - dim * t :], init, block.fuse_warped.bias)
        fw = fw.view(centre.shape)
    else:
        previous = None if fw is None else fuse[:, :dim]
        warped = (_warp_pieces(block, feats[g], new_flows[g]) for g in range(len(feats)))
        fw = _fold_into(ws.fw, warped, groups, fuse[:, fuse.shape[1] - dim * t :], block.fuse_warped.bias, previous)
    kernel_query = None
    if kernel_feat is not None:
        queries = (_rdb(block.rdb_kernel, k) for k in kernel_feat)
        weight, bias = block.fuse_kernel.weight.view(dim, -1), block.fuse_kernel.bias
        if ws is None:
            kernel_query = _fold_frames(queries, groups, weight, None, bias).view(centre.shape)
        else:
            kernel_query = _fold_into(ws.kernel_query, queries, groups, weight, bias)
    for attn_block in block.attn_blocks:
        fw = _attn_block(attn_block, fw, centre, kernel_query)
    state['fw'] = fw


def _flow_step(
    block: FRMABlock, feat: torch.Tensor, flows: torch.Tensor | None, centre_term: torch.Tensor
) -> torch.Tensor:
    """Flow-mask update of a frame group from ``cat(F0_c, f, warp(F, f))`` (``cat(F0_c, F)`` in Net_D's first
    block), given the centre features' share ``centre_term`` of the first convolution."""
    update = block.flow_update
    w_rest = update[0].weight.squeeze(2)[:, -(feat.shape[1] + (0 if flows is None else flows.shape[1])) :]
    if flows is None:
        hidden = _add(F.conv2d(feat, w_rest, padding=1), centre_term)
    elif not _inplace():
        hidden = F.conv2d(flows, w_rest[:, : flows.shape[1]], padding=1)
        hidden = hidden + F.conv2d(_warp_cl(block, feat, flows), w_rest[:, flows.shape[1] :], padding=1)
        hidden = hidden + centre_term
    else:
        # The warped features are convolved piece by piece (a convolution of a concatenation is the sum of
        # the pieces' convolutions) and row chunk by row chunk, so no full-size warped map or convolution
        # of it exists at any time.
        hidden = F.conv2d(flows, w_rest[:, : flows.shape[1]], padding=1).add_(centre_term)
        h = feat.shape[2]
        w_warp = w_rest[:, flows.shape[1] :]
        for c0, piece in _warp_pieces(block, feat, flows):
            weight = w_warp[:, c0 : c0 + piece.shape[1]]
            row_bytes = 4 * weight.shape[0] * piece.shape[0] * piece.shape[3]
            for lo, hi in _row_chunks(h, row_bytes, ATTN_CHUNK_BYTES):
                hidden[:, :, lo:hi] += _rows_conv_w(piece, 0, h, lo, hi, weight, None)
            del piece
    return _conv(update[2], _lrelu(hidden))


def _warp(block: FRMABlock, feat: torch.Tensor, flow_masks: torch.Tensor) -> torch.Tensor:
    """Multi-flow warp of a frame group: (n, C, h, w) contiguous."""
    return warp_multi_flow(feat.unsqueeze(0), flow_masks.unsqueeze(0), block.num_flow)[0]


#: Flow-mask pairs warped per call by the piecewise warps (bounds their temporaries).
WARP_FLOWS_PER_PIECE = 3


def _warp_pieces(block: FRMABlock, feat: torch.Tensor, flow_masks: torch.Tensor) -> Iterator:
    """Multi-flow warp of a frame group in pieces of :data:`WARP_FLOWS_PER_PIECE` channel groups:
    yields ``(first channel, (n, C_piece, h, w) warped channels)``. Channel group ``j`` only ever meets
    flow-mask pair ``j``, so warping a subset of groups with their pairs is exact."""
    n = block.num_flow
    per_group = feat.shape[1] // n
    # (no contiguous copy of the whole map: warping a piece copies it into the contiguous layout anyway)
    for j in range(0, n, WARP_FLOWS_PER_PIECE):
        k = min(j + WARP_FLOWS_PER_PIECE, n)
        piece = feat[:, j * per_group : k * per_group]
        flows = flow_masks[:, 3 * j : 3 * k]
        yield j * per_group, warp_multi_flow(piece.unsqueeze(0), flows.unsqueeze(0), k - j)[0]


def _warp_cl(block: FRMABlock, feat: torch.Tensor, flow_masks: torch.Tensor) -> torch.Tensor:
    """Multi-flow warp of a frame group, channels-last (assembled piece by piece without autograd)."""
    if not _inplace():
        return _cl(_warp(block, feat, flow_masks))
    out = torch.empty_like(feat, memory_format=_CL)
    for c0, piece in _warp_pieces(block, feat, flow_masks):
        out[:, c0 : c0 + piece.shape[1]] = piece
    return out


def _mm(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """1x1 convolution with a (c_out, c_in) weight of a (n, c_in, h, w) map in either memory format:
    (n, c_out, h*w), contiguous."""
    n, c, h, w = x.shape
    if x.is_contiguous():
        return _wmm(weight, x.reshape(n, c, h * w))
    return _wmm(weight, x.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2))


def _wmm(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x[i]`` for a (c_out, c_in) weight and (n, c_in, p) matrices (any strides): (n, c_out, p).

    A GEMM whose output has the pixels contiguous, the fast orientation for these shapes (``torch.matmul``
    would fold the batch into the pixels and produce the transposed, slower orientation)."""
    if x.shape[0] == 1:
        return torch.mm(weight, x[0]).unsqueeze(0)
    return torch.bmm(weight.unsqueeze(0).expand(x.shape[0], -1, -1), x)


def _fold_frames(
    feats: Iterable[torch.Tensor],
    groups: FrameGroups,
    weight: torch.Tensor,
    init: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """1x1 convolution of the frames folded into channels (``r``: channel ``c * t + frame``), plus ``init``.

    The fold is never materialised: frame ``k``'s features meet the weight columns ``k, k + t, ...``.

    Args:
        feats (Iterable[Tensor]): Per-group (frames, C, h, w) features, consumed one group at a time.
        groups (FrameGroups): Their grouping.
        weight (Tensor): (C_out, C * t) weight of the folded input.
        init (Tensor | None): (b, C_out, h*w) term to add (e.g. the ``Fw`` part of the convolution).
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
            part = _mm(weight[:, k::t], feat[first::t])
            samples = torch.arange(s + first, e, t) // t
            if len(samples) == groups.batch:
                acc = part if acc is None else _add(acc, part)
                continue
            if acc is None:
                acc = part.new_zeros((groups.batch, *part.shape[1:]))
            acc = acc.index_add_(0, samples, part) if _inplace() else acc.index_add(0, samples, part)
    if bias is not None:
        acc = _add(acc, bias.view(1, -1, 1))
    return acc


def _fold_into(
    out: torch.Tensor,
    feats: Iterable[torch.Tensor],
    groups: FrameGroups,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`_fold_frames` written in place into ``out`` (b, C_out, h, w) (no autograd).

    Each item of ``feats`` is a group's (frames, C, h, w) tensor, or an iterable of ``(c0, piece)``: the
    group's channels ``c0 ...`` as a (frames, C_piece, h, w) tensor (so a group need not exist whole).

    With ``previous`` (C_out, C_out), ``out``'s current content is the ``Fw`` part of the input and is
    replaced by ``previous @ out`` first, pixel chunk by pixel chunk.
    """
    b, c = out.shape[:2]
    flat = out.view(b, c, -1)
    if previous is None:
        flat.zero_()
    else:
        for i in range(b):
            for s in range(0, flat.shape[2], PIXEL_CHUNK):
                chunk = flat[i, :, s : s + PIXEL_CHUNK]
                chunk.copy_(previous @ chunk)
    t = groups.num_seq
    for (s, e), pieces in zip(groups.bounds, feats):
        for c0, piece in [(0, pieces)] if torch.is_tensor(pieces) else pieces:
            for j in range(s, e):
                columns = weight[:, j % t :: t][:, c0 : c0 + piece.shape[1]]
                flat[j // t].addmm_(columns, _mm_operand(piece[j - s]))
            del piece  # (loop variables would keep the last piece alive while the next is computed)
        del pieces
    if bias is not None:
        flat.add_(bias.view(1, -1, 1))
    return out


def _mm_operand(frame: torch.Tensor) -> torch.Tensor:
    """(C, h, w) frame in either memory format -> (C, h*w) matrix view."""
    if frame.is_contiguous():
        return frame.reshape(frame.shape[0], -1)
    return _flat(frame[None]).t()


def _attn_block(
    block: MultiAttentionBlock, x: torch.Tensor, centre: torch.Tensor, kernel_query: torch.Tensor | None
) -> torch.Tensor:
    """Multi-attention block on ``Fw`` (b, C, h, w, contiguous), updated in place without autograd.

    Under autograd each attention and feed-forward is checkpointed: its inputs are kept and its
    internals (the 2x hidden-width maps, q, k, v) recomputed in the backward pass, a few percent of the
    step's FLOPs for most of the attention stage's activation memory.
    """
    stages = [(_attention, block.co_attn, block.norm_co, centre), (_feed_forward, block.ffn_co, block.norm_ffn_co)]
    if block.degradation_aware:
        stages.append((_attention, block.da_attn, block.norm_da, kernel_query))
        stages.append((_feed_forward, block.ffn_da, block.norm_ffn_da))
    for fn, module, norm, *query in stages:
        if torch.is_grad_enabled():
            x = checkpoint(fn, module, norm, x, *query, use_reentrant=False)
        else:
            x = fn(module, norm, x, *query)
    return x


def _norm_rows(norm: nn.Module, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Channel layer norm (biased variance, eps 1e-5) of rows ``[lo, hi)`` of a contiguous (b, C, h, w) map,
    computed in that layout (reductions over the channel dimension): (b, C, rows*w)."""
    b, c = x.shape[:2]
    rows = x[:, :, lo:hi].reshape(b, c, -1)
    if _autocast():  # statistics in float32, as autocast runs layer_norm
        rows = rows.float()
    centred = rows - rows.mean(dim=1, keepdim=True)
    scale = torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + 1e-5)
    if _inplace():
        return centred.mul_(scale).mul_(norm.weight.view(-1, 1)).add_(norm.bias.view(-1, 1))
    return centred * scale * norm.weight.view(-1, 1) + norm.bias.view(-1, 1)


def _pixels_in(weight: torch.Tensor, bias: torch.Tensor | None, features: torch.Tensor, rows: int) -> torch.Tensor:
    """1x1 convolution of (b, C, rows*w) features (any strides) -> (b, C_out, rows, w)."""
    y = _wmm(weight, features)
    if bias is not None:
        y = _add(y, bias.view(-1, 1))
    return y.view(y.shape[0], y.shape[1], rows, -1)


def _attention(
    attn: CrossChannelAttention, norm: nn.Module, x: torch.Tensor, query_source: torch.Tensor
) -> torch.Tensor:
    """``x + attn(norm(x), query_source)`` in row chunks (in place without autograd); (b, C, h, w) contiguous.

    The L2 normalisation of q and k over the pixels is applied to the (C/heads)^2 logits (sums of squares
    and q k^T accumulate over the chunks), and the output projection is merged with the attention matrix
    into one per-sample (C, C) matrix applied to v.
    """
    b, c, h, w = x.shape
    heads = attn.num_heads
    w_q = attn.to_q.weight.view(c, c)
    w_kv = attn.to_kv.weight.view(2 * c, c)
    b_kv = attn.to_kv.bias
    dw_w, dw_b = attn.to_kv_dw.weight, attn.to_kv_dw.bias
    logits = q_sq = k_sq = None
    values = []
    for lo, hi in _row_chunks(h, 4 * b * 4 * c * w, ATTN_CHUNK_BYTES):
        a, z = max(lo - 1, 0), min(hi + 1, h)
        pixels = _norm_rows(norm, x, a, z)
        q = _pixels_in(w_q, attn.to_q.bias, _channel_major(query_source[:, :, a:z]), z - a)
        q = _rows_conv_w(q, a, h, lo, hi, attn.to_q_dw.weight, attn.to_q_dw.bias, c)
        k = _pixels_in(w_kv[:c], None if b_kv is None else b_kv[:c], pixels, z - a)
        k = _rows_conv_w(k, a, h, lo, hi, dw_w[:c], None if dw_b is None else dw_b[:c], c)
        v = _pixels_in(w_kv[c:], None if b_kv is None else b_kv[c:], pixels, z - a)
        values.append(_rows_conv_w(v, a, h, lo, hi, dw_w[c:], None if dw_b is None else dw_b[c:], c))
        q = q.reshape(b, heads, c // heads, -1)
        k = k.reshape(b, heads, c // heads, -1)
        if _autocast():  # logits and norms in float32, as autocast runs softmax and normalisations
            q, k = q.float(), k.float()
        part, q_part, k_part = q @ k.transpose(-2, -1), q.square().sum(-1), k.square().sum(-1)
        if logits is None:
            logits, q_sq, k_sq = part, q_part, k_part
        else:
            logits, q_sq, k_sq = _add(logits, part), _add(q_sq, q_part), _add(k_sq, k_part)
    eps = 1e-12  # F.normalize's
    norms = q_sq.sqrt().clamp_min(eps).unsqueeze(-1) * k_sq.sqrt().clamp_min(eps).unsqueeze(-2)
    weights = torch.softmax(logits / norms * attn.temperature, dim=-1)  # (b, heads, c_q, c_v)
    proj = attn.proj_out.weight.view(c, heads, c // heads)
    mixed = torch.einsum('ohq,bhqv->bohv', proj, weights).reshape(b, c, c)
    bias = attn.proj_out.bias
    if _inplace():
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


def _channel_major(x: torch.Tensor) -> torch.Tensor:
    """(b, C, rows, w) map in either memory format -> (b, C, rows*w), a (possibly transposed) view."""
    b, c = x.shape[:2]
    if x.is_contiguous():
        return x.reshape(b, c, -1)
    return x.permute(0, 2, 3, 1).reshape(b, -1, c).transpose(1, 2)


def _feed_forward(ffn: GatedFeedForward, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + ffn(norm(x))`` in row chunks (the 2x hidden-width maps never exist whole), in place without
    autograd; (b, C, h, w) contiguous. A chunk's result is added only after the next chunk has read its
    halo row, which belongs to the previous chunk."""
    b, c, h, w = x.shape
    hidden = ffn.project_out.in_channels
    w_in = ffn.project_in.weight.view(2 * hidden, c)
    w_out = ffn.project_out.weight.view(c, hidden)
    outs = []
    for lo, hi in _row_chunks(h, 4 * b * 2 * hidden * w, ATTN_CHUNK_BYTES):
        a, z = max(lo - 1, 0), min(hi + 1, h)
        expanded = _pixels_in(w_in, ffn.project_in.bias, _norm_rows(norm, x, a, z), z - a)
        dw = ffn.dwconv
        gate, value = _rows_conv_w(expanded, a, h, lo, hi, dw.weight, dw.bias, dw.groups).chunk(2, dim=1)
        gated = F.gelu(gate)
        gated = gated.mul_(value) if _inplace() else gated * value
        out = _wmm(w_out, gated.reshape(b, hidden, -1))
        if ffn.project_out.bias is not None:
            out = _add(out, ffn.project_out.bias.view(-1, 1))
        if _inplace() and outs:
            (p_lo, p_hi), pending = outs.pop()
            x[:, :, p_lo:p_hi] += pending
        outs.append(((lo, hi), out.view(b, c, hi - lo, w)))
        del expanded, gate, value, gated, out
    if _inplace():
        (p_lo, p_hi), pending = outs.pop()
        x[:, :, p_lo:p_hi] += pending
        return x
    return x + torch.cat([o for _, o in outs], dim=2)


def _row_chunks(height: int, bytes_per_row: int, budget: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of at most ``budget`` bytes (one range under autograd, where slicing would only add
    gradient scatter work and the stages that need it are checkpointed)."""
    if not _inplace():
        return [(0, height)]
    rows = max(1, min(height, (budget or CHUNK_BYTES) // max(1, bytes_per_row)))
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def _rows_conv_w(
    x: torch.Tensor,
    x_row0: int,
    height: int,
    lo: int,
    hi: int,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: int = 1,
) -> torch.Tensor:
    """Rows ``[lo, hi)`` of a 3x3 convolution (zero padding 1) of a map with ``height`` rows.

    ``x`` holds rows ``[x_row0, x_row0 + x.shape[2])`` of the input and must cover ``[lo - 1, hi + 1)``
    within the image; zero rows are added only at the image border.
    """
    a, b = max(lo - 1, 0), min(hi + 1, height)
    slab = x[:, :, a - x_row0 : b - x_row0]
    top, bottom = int(lo == 0), int(hi == height)
    if top or bottom:
        slab = F.pad(slab, (0, 0, top, bottom))
    weight = weight.squeeze(2) if weight.dim() == 5 else weight
    return F.conv2d(slab, weight, bias, padding=(0, 1), groups=groups)


def _rows_conv(x: torch.Tensor, x_row0: int, height: int, lo: int, hi: int, conv: nn.Module) -> torch.Tensor:
    """:func:`_rows_conv_w` with a convolution module's parameters."""
    return _rows_conv_w(x, x_row0, height, lo, hi, conv.weight, conv.bias, conv.groups)


def _conv3d_frames(
    conv: nn.Conv3d, frames: list[torch.Tensor], groups: FrameGroups, out: list | None = None
) -> list[torch.Tensor]:
    """A full (kt, kh, kw) Conv3d with temporal zero padding, as 2-D convolutions between frame pairs.

    Output frame ``t`` sums, over the kernel's temporal taps ``dt``, the 2-D convolution of input frame
    ``t + dt - kt // 2`` (padding frames contribute nothing, so they are skipped). ``out``: optional
    grouped destinations (see :meth:`FrameGroups.buffers`).
    """
    return _conv3d_frames_weights(conv.weight, conv.bias, conv.padding[-2:], frames, groups, out=out)


def _conv3d_frames_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    frames: list[torch.Tensor],
    groups: FrameGroups,
    tap_bias: torch.Tensor | None = None,
    out: list | None = None,
) -> list[torch.Tensor]:
    """:func:`_conv3d_frames` with explicit weights (c_out, c_in, kt, kh, kw); ``tap_bias`` (c_out, kt) is
    added once per valid temporal tap."""
    t = groups.num_seq
    taps = weight.shape[2]
    outs = []
    for g, (s, e) in enumerate(groups.bounds):
        frame_outs = []
        for j in range(s, e):
            # accumulate straight into the destination frame when there is one
            frame_acc = None if out is None or out[g] is None else out[g][j - s : j - s + 1]
            started = False
            for dt in range(taps):
                src = j % t + dt - taps // 2
                if not 0 <= src < t:
                    continue
                part = F.conv2d(groups.frame(frames, j - j % t + src), weight[:, :, dt], padding=padding)
                if tap_bias is not None:
                    part = _add(part, tap_bias[:, dt].view(1, -1, 1, 1))
                if frame_acc is not None and not started:
                    frame_acc.copy_(part)
                else:
                    frame_acc = part if frame_acc is None else _add(frame_acc, part)
                started = True
                del part
            if bias is not None:
                frame_acc = _add(frame_acc, bias.view(1, -1, 1, 1))
            frame_outs.append(frame_acc)
        has_dest = out is not None and out[g] is not None
        outs.append(out[g] if has_dest else frame_outs[0] if len(frame_outs) == 1 else torch.cat(frame_outs))
    return outs


def _composed_kernel_embedding(
    kernel_head: nn.Sequential, kernel_embed: nn.Sequential, hidden: list[torch.Tensor], groups: FrameGroups
) -> list[torch.Tensor]:
    """``kernel_embed[0](K_D)`` without ``K_D``: ``K_D = conv_b(hidden)`` (3x3 per frame), so the 3x3x3
    embedding of it is one 5x5x3 convolution of ``hidden`` away from the border; the outermost pixel
    ring, where ``K_D``'s zero padding differs from a padded ``hidden``, is computed the reference way."""
    conv_b, conv_e = kernel_head[2], kernel_embed[0]
    w_b = conv_b.weight.squeeze(2).double()  # (k_d^2, C, 3, 3)
    w_e = conv_e.weight.double()  # (C_e, k_d^2, 3, 3, 3)
    composed = torch.stack([F.conv_transpose2d(w_e[:, :, dt], w_b) for dt in range(w_e.shape[2])], dim=2)
    tap_bias = None
    if conv_b.bias is not None:
        tap_bias = torch.einsum('oityx,i->ot', w_e, conv_b.bias.double()).float()
    dest = groups.buffers(conv_e.out_channels, hidden[0])
    out = _conv3d_frames_weights(composed.float(), conv_e.bias, (2, 2), hidden, groups, tap_bias, dest)
    _fix_border_ring(conv_b, conv_e, hidden, groups, out)
    return out


def _fix_border_ring(
    conv_b: nn.Module, conv_e: nn.Module, hidden: list[torch.Tensor], groups: FrameGroups, out: list[torch.Tensor]
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
        slab = [_conv(conv_b, f[:, :, ry, rx]) for f in hidden]
        ring = _conv3d_frames(conv_e, slab, groups)
        for o, r in zip(out, ring):
            o[:, :, oy, ox] = r[:, :, sy, sx]


def _restore(net_r: RestorationNet, fw: torch.Tensor, lr_warp: torch.Tensor, t: int) -> torch.Tensor:
    """Net_R's output, FGDF upsampling + residual branch, in LR row chunks: (b, c, s*h, s*w)."""
    b, dim, h, w = fw.shape
    scale = net_r.scale
    res_in = _lrelu(_conv(net_r.res_conv_in, _cl(fw)))
    kernel_in = _cl(fw.view(b, dim // t, t, h, w).transpose(1, 2).reshape(b * t, dim // t, h, w))
    head = net_r.kernel_head
    ups = net_r.upsampler
    bytes_per_row = 4 * b * w * max(t * head[2].out_channels, dim * scale * scale)
    pad = int(round((head[2].out_channels // (scale * scale)) ** 0.5)) // 2
    padded = F.pad(lr_warp.reshape(b * t, -1, h, w), (pad, pad, pad, pad), mode='replicate')
    padded = padded.view(b, t, -1, h + 2 * pad, w + 2 * pad)
    outs = []
    for lo, hi in _row_chunks(h, bytes_per_row, RESTORE_CHUNK_BYTES):
        # kernel head: two 3x3 convs -> hidden rows [lo-1, hi+1)
        hlo, hhi = max(lo - 1, 0), min(hi + 1, h)
        hidden = _lrelu(_rows_conv(kernel_in, 0, h, hlo, hhi, head[0]))
        kernels = _rows_conv(hidden, hlo, h, lo, hi, head[2]).view(b, t, -1, hi - lo, w)
        out = fgdf_upsample_rows(padded, kernels, lo, scale)
        outs.append(_add(out, _residual_rows(net_r, ups, res_in, lo, hi)))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _residual_rows(net_r: RestorationNet, ups: nn.Module, res_in: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows ``[s*lo, s*hi)`` of the residual branch ``res_conv_out(upsampler(res_in))`` (s = 4)."""
    h = res_in.shape[2]
    # rows needed at each stage (exclusive ends), from the output back to the LR input
    o_lo, o_hi = 4 * lo, 4 * hi
    d_lo, d_hi = max(o_lo - 1, 0), min(o_hi + 1, 4 * h)  # conv3 output (4x)
    c_lo, c_hi = max(d_lo - 1, 0), min(d_hi + 1, 4 * h)  # shuffled conv2 output (4x)
    b_lo, b_hi = c_lo // 2, (c_hi + 1) // 2  # conv2 output rows (2x)
    a_lo, a_hi = max(b_lo - 1, 0), min(b_hi + 1, 2 * h)  # shuffled conv1 output (2x)
    l_lo, l_hi = a_lo // 2, (a_hi + 1) // 2  # conv1 output rows (LR)
    x = F.pixel_shuffle(_lrelu(_rows_conv(res_in, 0, h, l_lo, l_hi, ups.conv1)), 2)
    x = F.pixel_shuffle(_lrelu(_rows_conv(x, 2 * l_lo, 2 * h, b_lo, b_hi, ups.conv2)), 2)
    x = _lrelu(_rows_conv(x, 2 * b_lo, 4 * h, d_lo, d_hi, ups.conv3))
    return _rows_conv(x, d_lo, 4 * h, o_lo, o_hi, net_r.res_conv_out)
