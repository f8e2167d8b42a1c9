"""Fast execution of FMA-Net (``FMANet(impl='fast')``): the blocks' own parameters, a different schedule.

:class:`FastExecutor` runs Net_D's and Net_R's parameters (same module tree, same state dict) through a
schedule that computes the reference function up to float round-off:

- Frames live in a frame batch ``(b*t, C, h, w)`` in channels-last memory, split into groups of
  consecutive frames that fit :attr:`MemoryBudgets.chunk_bytes` (one frame per group at 180x320), so no
  activation exceeds glibc's 32 MiB mmap threshold and the allocator reuses memory instead of
  page-faulting. The per-frame 3-D convolutions run as 2-D convolutions on that batch.
- A convolution of a concatenation is the sum of the convolutions of its parts: the flow update convolves
  the (frame-independent) centre features once per sample, and the fold of the warped frames into ``Fw``'s
  channels is a per-frame weight slice (layer-level tricks: :mod:`~fmanet_plugin.archs.fmanet_fast_layers`
  and :mod:`~fmanet_plugin.archs.fmanet_fast_attention`).
- Outputs that were not requested (anchors, Net_D's image flow) are not computed.

The in-place CPU inference schedule and the autograd/autocast/GPU schedule share this code; an
:class:`~fmanet_plugin.ops.chunked.ExecutionMode` decided once per call picks in-place or out-of-place
arithmetic. In place, the long-lived state of a network lives in a :class:`Workspace`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fmanet_plugin.archs.fmanet_blocks import FRMABlock, pointwise_matrix
from fmanet_plugin.archs.fmanet_fast_attention import attention_block
from fmanet_plugin.archs.fmanet_fast_layers import (
    composed_kernel_embedding,
    conv_head,
    leaky_relu_,
    rdb_forward,
    restore_rows,
    rrdb_forward,
)
from fmanet_plugin.archs.fmanet_nets import DegradationNet, RestorationNet
from fmanet_plugin.ops import fgdf_downsample_chunked, warp_image, warp_multi_flow
from fmanet_plugin.ops.chunked import ExecutionMode, FrameGroups, conv3d_frames, conv3x3_rows, frame_conv
from fmanet_plugin.ops.pointwise import conv1x1_flat, fold_frames, fold_frames_into
from fmanet_plugin.utils.phase_profile import phase

import torch
import torch.nn.functional as F

#: Outputs of Net_R.
NET_R_OUTPUTS = frozenset({'output', 'lr_warp', 'anchor_r'})


@dataclass(frozen=True)
class MemoryBudgets:
    """Memory budgets of the in-place (CPU inference) schedule. The results do not depend on them.

    Attributes:
        chunk_bytes (int): Activation bytes of one frame group, of one chunk of samples and of one row chunk
            of FGDF downsampling. Below glibc's largest dynamic mmap threshold (32 MiB), so buffers of this
            size are recycled from the heap. Default: 24 MiB.
        attention_chunk_bytes (int): Row-chunk budget of the attention, feed-forward and flow-update stages
            (small enough to stay in cache). Default: 4 MiB.
        restore_chunk_bytes (int): Row-chunk budget of the output stage (kernel head, FGDF upsampling,
            residual upsampler). Its temporaries come last and fit the heap's free fragments at 8 MiB; at
            24 MiB they grew the peak RSS by ~40-70 MB. Default: 8 MiB.
        pixel_chunk (int): Pixels per GEMM of the fused 1x1 convolutions. Default: 8192.
        warp_flows_per_piece (int): Flow-mask pairs warped per call by the piecewise multi-flow warps (bounds
            their temporaries). Default: 3.
    """

    chunk_bytes: int = 24 * 2**20
    attention_chunk_bytes: int = 4 * 2**20
    restore_chunk_bytes: int = 8 * 2**20
    pixel_chunk: int = 8192
    warp_flows_per_piece: int = 3


class FastExecutor:
    """Runs an FMA-Net's Net_D and Net_R through the fast schedule; one per network.

    The executor holds no module: the networks are passed to every call, so that DataParallel replicas
    and copies of the model run their own parameters.

    Args:
        budgets (MemoryBudgets | None): Memory budgets of the in-place schedule. Default: ``MemoryBudgets()``.
    """

    def __init__(self, budgets: MemoryBudgets | None = None) -> None:
        self.budgets = MemoryBudgets() if budgets is None else budgets

    def __call__(
        self,
        net_d: DegradationNet,
        net_r: RestorationNet | None,
        lq: torch.Tensor,
        gt: torch.Tensor | None,
        wanted: set[str],
    ) -> dict[str, torch.Tensor]:
        """The outputs in ``wanted`` (names and shapes of :meth:`FMANet.forward`), as the reference computes them.

        In place, samples run in chunks that fit ``budgets.chunk_bytes`` (everything in FMA-Net is per sample).

        Args:
            net_d (DegradationNet): Net_D.
            net_r (RestorationNet | None): Net_R, or None (stage 1).
            lq (Tensor): Blurry LR frames (b, t, c, h, w).
            gt (Tensor | None): Sharp HR frames (b, t, c, s*h, s*w).
            wanted (set[str]): Output names, all available for these inputs.

        Returns:
            dict[str, Tensor]: The outputs in ``wanted``.
        """
        mode = ExecutionMode.for_inputs(lq)
        b, _, _, h, w = lq.shape
        per_chunk = max(1, self.budgets.chunk_bytes // (4 * net_d.config.dim * h * w))
        if b <= per_chunk or not mode.in_place:
            return _ChunkPass(net_d, net_r, self.budgets, mode, lq).run(gt, wanted)
        parts = [
            _ChunkPass(net_d, net_r, self.budgets, mode, lq[s : s + per_chunk]).run(
                None if gt is None else gt[s : s + per_chunk], wanted
            )
            for s in range(0, b, per_chunk)
        ]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class Workspace:
    """Long-lived state of a network written in place: the centre features, ``Fw``, the kernel query and the
    flow-mask pairs, carved from one allocation. glibc maps it outside the heap, so it cannot pin the heap's
    fragments of the short-lived temporaries (which would grow the RSS).

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


@dataclass
class DegradationFeatures:
    """Net_D's results on grouped frames that later stages consume (fields are set to None once consumed).

    Attributes:
        features (list[Tensor] | None): Grouped final features ``F`` (frames, C, h, w).
        flow_masks (list[Tensor] | None): Grouped final flow-mask pairs ``f`` (frames, 3n, h, w).
        kernel_hidden (list[Tensor] | None): Grouped hidden layer of the kernel head (frames, C, h, w).
        kernels (list[Tensor] | None): Grouped kernels ``K_D`` (frames, k_d*k_d, h, w), when needed.
    """

    features: list[torch.Tensor] | None
    flow_masks: list[torch.Tensor] | None
    kernel_hidden: list[torch.Tensor] | None
    kernels: list[torch.Tensor] | None


@dataclass
class RefinementState:
    """What the FRMA blocks of a network hand to each other.

    Attributes:
        flow_masks (list[Tensor] | None): Grouped flow-mask pairs ``f`` (frames, 3n, h, w); None before
            Net_D's first block.
        warped_centre (Tensor | None): ``Fw`` (b, C, h, w), contiguous; None before the first block.
    """

    flow_masks: list[torch.Tensor] | None = None
    warped_centre: torch.Tensor | None = None


class _ChunkPass:
    """One call of the schedule on a chunk of samples: the networks, budgets, mode, grouping and workspace."""

    def __init__(
        self,
        net_d: DegradationNet,
        net_r: RestorationNet | None,
        budgets: MemoryBudgets,
        mode: ExecutionMode,
        lq: torch.Tensor,
    ) -> None:
        self.net_d, self.net_r, self.budgets, self.mode, self.lq = net_d, net_r, budgets, mode, lq
        self.config = net_d.config
        b, t, _, h, w = lq.shape
        self.groups = FrameGroups(b, t, h, w, self.config.dim, budgets.chunk_bytes)
        self.workspace = (
            Workspace(self.groups, self.config.dim, self.config.flow_channels, lq) if mode.in_place else None
        )

    def run(self, gt: torch.Tensor | None, wanted: set[str]) -> dict[str, torch.Tensor]:
        """The outputs in ``wanted`` for this chunk's ``lq`` and ``gt``."""
        groups, mode = self.groups, self.mode
        b, t, c, h, w = self.lq.shape
        frames = groups.split(self.lq.reshape(b * t, c, h, w))
        need_r = self.net_r is not None and bool(wanted & NET_R_OUTPUTS)
        compose = need_r and gt is None and mode.in_place and min(h, w) >= 5
        with phase('net_d'):
            d = self._net_d(frames, need_kernels=('recon' in wanted) or (need_r and not compose))
            out = self._net_d_outputs(d, gt, wanted)
        if need_r:
            with phase('net_r'):
                kernel_feat = self._kernel_features(d, compose)
                out.update(self._net_r(frames, d, kernel_feat, wanted))
        return {k: v for k, v in out.items() if k in wanted}

    def _net_d_outputs(
        self, d: DegradationFeatures, gt: torch.Tensor | None, wanted: set[str]
    ) -> dict[str, torch.Tensor]:
        """Net_D's outputs in ``wanted``: image flow, HR frames warped with it, ``recon`` and the anchor."""
        groups, scale = self.groups, self.config.scale
        b, t, c, h, w = self.lq.shape
        out = {}
        if wanted & {'image_flow', 'hr_warp', 'recon'}:
            flow_mask = groups.gather([conv_head(self.net_d.image_flow_head, f) for f in d.flow_masks]).contiguous()
            if 'image_flow' in wanted:
                out['image_flow'] = flow_mask[:, :2].reshape(b, t, 2, h, w)
            if gt is not None:
                hr_warp, hr_ones = warp_image(gt.reshape(b * t, c, scale * h, scale * w), flow_mask, scale)
                out['hr_warp'] = hr_warp = hr_warp.view(b, t, c, scale * h, scale * w)
                if 'recon' in wanted:
                    kernels = groups.gather(d.kernels).reshape(b, t, -1, h, w)
                    hr_ones = hr_ones.view(b, t, 1, scale * h, scale * w)
                    with phase('fgdf'):
                        out['recon'] = fgdf_downsample_chunked(
                            hr_warp, kernels, scale, hr_ones, self.budgets.chunk_bytes
                        )
        if 'anchor_d' in wanted:
            anchor = groups.gather([conv_head(self.net_d.anchor_head, f) for f in d.features])
            out['anchor_d'] = anchor.contiguous().view(b, t, c, h, w)
        return out

    def _net_d(self, frames: list[torch.Tensor], need_kernels: bool) -> DegradationFeatures:
        """Net_D on grouped frames (K_D only if ``need_kernels``)."""
        net_d, mode, groups, pixel_chunk = self.net_d, self.mode, self.groups, self.budgets.pixel_chunk
        dest = groups.buffers(self.config.dim, frames[0], mode)
        feats = []
        for f, buffer in zip(frames, dest):
            first = leaky_relu_(frame_conv(net_d.conv_first, mode.to_channels_last(f)))
            feats.append(rrdb_forward(net_d.rrdb, first, mode, pixel_chunk, buffer))
            del first
        centre = self._centre_features(feats)
        state = RefinementState()
        for block in net_d.frma_blocks:
            self._frma(block, feats, state, centre)
        head = net_d.kernel_head
        dest = groups.buffers(self.config.dim, frames[0], mode)
        hidden = [
            leaky_relu_(_into_buffer(frame_conv(head.hidden_conv, f), buffer))
            for f, buffer in zip(self._split_frames(state.warped_centre), dest)
        ]
        kernels = [frame_conv(head.output_conv, f) for f in hidden] if need_kernels else None
        return DegradationFeatures(feats, state.flow_masks, hidden, kernels)

    def _kernel_features(self, d: DegradationFeatures, compose: bool) -> list[torch.Tensor]:
        """Net_R's kernel features ``k_D = kernel_embed(K_D)``, grouped; consumes ``d``'s kernels."""
        embed, mode, groups = self.net_r.kernel_embed, self.mode, self.groups
        if compose:
            kernel_feat = composed_kernel_embedding(self.net_d.kernel_head, embed, d.kernel_hidden, groups, mode)
        else:
            d.kernel_hidden = None
            kernel_feat = conv3d_frames(embed.hidden_conv, d.kernels, groups, mode)
        d.kernel_hidden = d.kernels = None
        kernel_feat = [leaky_relu_(k) for k in kernel_feat]
        dest = groups.buffers(self.config.dim, kernel_feat[0], mode)
        return conv3d_frames(embed.output_conv, kernel_feat, groups, mode, dest)

    def _net_r(
        self, frames: list[torch.Tensor], d: DegradationFeatures, kernel_feat: list[torch.Tensor], wanted: set[str]
    ) -> dict[str, torch.Tensor]:
        """Net_R on grouped frames; consumes ``d``'s features and flows and ``kernel_feat``."""
        net_r, mode, groups, ws = self.net_r, self.mode, self.groups, self.workspace
        b, t = groups.batch, groups.num_seq
        c, h, w = frames[0].shape[1:]
        feats, flows = d.features, d.flow_masks
        d.features = d.flow_masks = None
        for g, x in enumerate(frames):
            # Net_D's features of a frame are not needed once convolved: Net_R's replace them (in place).
            first = leaky_relu_(frame_conv(net_r.conv_first, torch.cat((mode.to_channels_last(x), feats[g]), dim=1)))
            feats[g] = rrdb_forward(net_r.rrdb, first, mode, self.budgets.pixel_chunk, feats[g])
        centre = self._centre_features(feats)
        for g, f in enumerate(flows):
            flows[g] = _into_buffer(conv_head(net_r.flow_refine, f), None if ws is None else ws.flows[g])
        state = RefinementState(flows)
        for block in net_r.frma_blocks:
            self._frma(block, feats, state, centre, kernel_feat)
        out = {}
        if 'anchor_r' in wanted:
            anchor = groups.gather([conv_head(net_r.anchor_head, f) for f in feats])
            out['anchor_r'] = anchor.contiguous().view(b, t, c, h, w)
        feats.clear()
        kernel_feat.clear()
        if not wanted & {'output', 'lr_warp'}:
            return out
        centre_x = torch.cat(groups.centre_frames(frames))
        lr_warp = []
        for g, (x, f) in enumerate(zip(frames, state.flow_masks)):
            # the image flow is estimated twice: a first estimate warps x, then it is refined
            coarse = conv_head(net_r.image_flow_head, f).contiguous()
            coarse_warp = mode.to_channels_last(warp_image(x, coarse, with_ones=False)[0])
            refine_in = torch.cat((f, coarse_warp, mode.to_channels_last(centre_x[groups.samples(g)])), dim=1)
            flow_mask = conv_head(net_r.image_flow_refine, refine_in).contiguous()
            lr_warp.append(warp_image(x, flow_mask, with_ones=False)[0])
        lr_warp = groups.gather(lr_warp).view(b, t, c, h, w)
        out['lr_warp'] = lr_warp
        if 'output' in wanted:
            out['output'] = restore_rows(net_r, state.warped_centre, lr_warp, mode, self.budgets.restore_chunk_bytes)
        return out

    def _centre_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Copy of every sample's centre-frame features, (b, C, h, w) (into the workspace in place)."""
        frames = self.groups.centre_frames(feats)
        if self.workspace is None:
            return torch.cat(frames)
        for i, f in enumerate(frames):
            self.workspace.centre[i : i + 1].copy_(f)
        return self.workspace.centre

    def _split_frames(self, fw: torch.Tensor) -> list[torch.Tensor]:
        """``Fw`` (b, C, h, w) viewed per frame, channel ``c * t + frame``: grouped (frames, C / t, h, w)."""
        b, dim, h, w = fw.shape
        t = self.groups.num_seq
        frames = fw.reshape(b, dim // t, t, h, w).transpose(1, 2).reshape(b * t, dim // t, h, w)
        return [self.mode.to_channels_last(f) for f in self.groups.split(frames)]

    def _frma(
        self,
        block: FRMABlock,
        feats: list[torch.Tensor],
        state: RefinementState,
        centre: torch.Tensor,
        kernel_feat: list[torch.Tensor] | None = None,
    ) -> None:
        """One FRMA block: updates the grouped features ``feats`` (items replaced, or overwritten in place) and
        ``state``. In place, ``f``, ``Fw`` and the kernel query live in the workspace."""
        mode, groups, ws, pixel_chunk = self.mode, self.groups, self.workspace, self.budgets.pixel_chunk
        w_centre = block.flow_update_weights()[0]
        # The centre features are the same for every frame: convolve them once per sample.
        centre_term = F.conv2d(centre, w_centre, block.flow_update.hidden_conv.bias, padding=1)
        flows, new_flows = state.flow_masks, []
        for g in range(len(feats)):
            feats[g] = rdb_forward(block.rdb, feats[g], mode, pixel_chunk, feats[g])
            step = self._flow_step(block, feats[g], None if flows is None else flows[g], centre_term[groups.samples(g)])
            if ws is not None:
                new_flows.append(ws.flows[g].copy_(step) if flows is None else ws.flows[g].add_(step))
            else:
                new_flows.append(step if flows is None else step + flows[g])
            del step
        state.flow_masks = new_flows
        del flows, centre_term

        previous, folded = block.fuse_warped_weights()
        bias = block.fuse_warped.bias
        if ws is None:
            warped = (self._warp(block, feats[g], new_flows[g]) for g in range(len(feats)))
            init = None if previous is None else conv1x1_flat(previous, state.warped_centre)
            fw = fold_frames(warped, groups, folded, mode, init, bias).view(centre.shape)
        else:
            pieces = (self._warp_pieces(block, feats[g], new_flows[g]) for g in range(len(feats)))
            fw = fold_frames_into(ws.fw, pieces, groups, folded, pixel_chunk, bias, previous)
        kernel_query = None
        if kernel_feat is not None:
            queries = (rdb_forward(block.rdb_kernel, k, mode, pixel_chunk) for k in kernel_feat)
            weight, bias = pointwise_matrix(block.fuse_kernel), block.fuse_kernel.bias
            if ws is None:
                kernel_query = fold_frames(queries, groups, weight, mode, None, bias).view(centre.shape)
            else:
                kernel_query = fold_frames_into(ws.kernel_query, queries, groups, weight, pixel_chunk, bias)
        with phase('attention'):
            for attn_block in block.attn_blocks:
                fw = attention_block(attn_block, fw, centre, kernel_query, mode, self.budgets.attention_chunk_bytes)
        state.warped_centre = fw

    def _flow_step(
        self, block: FRMABlock, feat: torch.Tensor, flows: torch.Tensor | None, centre_term: torch.Tensor
    ) -> torch.Tensor:
        """Flow-mask update of a frame group from ``cat(F0_c, f, warp(F, f))`` (``cat(F0_c, F)`` in Net_D's first
        block), given the centre features' share ``centre_term`` of the first convolution."""
        mode = self.mode
        _, w_flows, w_feat = block.flow_update_weights()
        if flows is None:
            hidden = mode.add(F.conv2d(feat, w_feat, padding=1), centre_term)
        elif not mode.in_place:
            hidden = F.conv2d(flows, w_flows, padding=1)
            warped = mode.to_channels_last(self._warp(block, feat, flows))
            hidden = hidden + F.conv2d(warped, w_feat, padding=1) + centre_term
        else:
            # The warped features are convolved piece by piece (a convolution of a concatenation is the sum of
            # the pieces' convolutions) and row chunk by row chunk, so no full-size warped map or convolution
            # of it exists at any time.
            hidden = F.conv2d(flows, w_flows, padding=1).add_(centre_term)
            h = feat.shape[2]
            for c0, piece in self._warp_pieces(block, feat, flows):
                weight = w_feat[:, c0 : c0 + piece.shape[1]]
                row_bytes = 4 * weight.shape[0] * piece.shape[0] * piece.shape[3]
                for lo, hi in mode.row_chunks(h, row_bytes, self.budgets.attention_chunk_bytes):
                    hidden[:, :, lo:hi] += conv3x3_rows(piece, 0, h, lo, hi, weight, None)
                del piece
        return frame_conv(block.flow_update.output_conv, leaky_relu_(hidden))

    @staticmethod
    def _warp(block: FRMABlock, feat: torch.Tensor, flow_masks: torch.Tensor) -> torch.Tensor:
        """Multi-flow warp of a frame group: (n, C, h, w) contiguous."""
        return warp_multi_flow(feat.unsqueeze(0), flow_masks.unsqueeze(0), block.num_flow)[0]

    def _warp_pieces(
        self, block: FRMABlock, feat: torch.Tensor, flow_masks: torch.Tensor
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Multi-flow warp of a frame group in pieces of ``budgets.warp_flows_per_piece`` channel groups: yields
        ``(first channel, (n, C_piece, h, w) warped channels)``. Channel group ``j`` only ever meets flow-mask
        pair ``j``, so warping a subset of groups with their pairs is exact."""
        n, step = block.num_flow, self.budgets.warp_flows_per_piece
        per_group = feat.shape[1] // n
        # (no contiguous copy of the whole map: warping a piece copies it into the contiguous layout anyway)
        for j in range(0, n, step):
            k = min(j + step, n)
            piece = feat[:, j * per_group : k * per_group]
            yield (
                j * per_group,
                warp_multi_flow(piece.unsqueeze(0), flow_masks[:, 3 * j : 3 * k].unsqueeze(0), k - j)[0],
            )


def _into_buffer(x: torch.Tensor, buffer: torch.Tensor | None) -> torch.Tensor:
    """``x`` copied into the long-lived ``buffer`` when there is one (in place), else ``x``."""
    return x if buffer is None else buffer.copy_(x)
