"""Chunked execution primitives: frame groups, row chunks and convolutions that run on them.

Model-agnostic pieces of a memory-bounded CPU inference schedule (used by ``FMANet(impl='fast')``):

- :class:`ExecutionMode`: decided once per call; picks in-place or out-of-place arithmetic, channels-last
  copies and row chunking, so that the same code serves CPU inference and autograd/autocast/GPU runs.
- :class:`FrameGroups`: the ``b*t`` frames of a clip batch as a "frame batch" ``(b*t, C, h, w)``, split into
  groups of consecutive frames that fit a memory budget.
- Row-range and temporal convolutions that compute exactly what the whole-tensor convolution would, piece by
  piece (zero padding only at the image or clip border).

Matrix products of 1x1 convolutions live in :mod:`fmanet_plugin.ops.pointwise`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ExecutionMode:
    """How one call runs, decided once from its inputs and the grad/autocast state.

    Attributes:
        in_place (bool): CPU inference schedule: in-place updates, long-lived buffers, row and pixel chunks.
            It needs autograd off (in-place updates would break the recorded graph), autocast off (buffers
            have one dtype, autocast picks one per op) and CPU tensors (on a GPU chunking only adds launches).
        autograd (bool): Gradients are recorded (memory-heavy stages are then checkpointed).
        autocast (bool): Mixed precision is on (statistics are then computed in float32).
        channels_last (bool): Feature maps are copied to channels-last memory: in the CPU inference
            schedule and on GPUs (cuDNN's tensor-core convolutions). CPU maps under autograd stay
            contiguous: oneDNN's backward passes are faster on them.
    """

    in_place: bool
    autograd: bool
    autocast: bool
    channels_last: bool

    @classmethod
    def for_inputs(cls, x: torch.Tensor) -> ExecutionMode:
        """The mode of a call whose inputs are ``x``, under the current grad and autocast state."""
        autocast = torch.is_autocast_enabled('cpu') or torch.is_autocast_enabled('cuda')
        autograd = torch.is_grad_enabled()
        in_place = not autograd and not autocast and x.device.type == 'cpu'
        return cls(in_place, autograd, autocast, channels_last=in_place or x.is_cuda)

    def add(self, acc: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``acc + other``, reusing ``acc``'s memory in place (``acc`` must be a temporary)."""
        return acc.add_(other) if self.in_place else acc + other

    def mul(self, acc: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``acc * other``, reusing ``acc``'s memory in place (``acc`` must be a temporary)."""
        return acc.mul_(other) if self.in_place else acc * other

    def index_add(self, acc: torch.Tensor, index: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``acc.index_add(0, index, source)``, in place when allowed."""
        return acc.index_add_(0, index, source) if self.in_place else acc.index_add(0, index, source)

    def to_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in channels-last memory when the mode uses it, else ``x`` unchanged."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def row_chunks(self, height: int, bytes_per_row: int, budget: int) -> list[tuple[int, int]]:
        """Row ranges ``[lo, hi)`` of at most ``budget`` bytes; one range out of place, where slicing would only
        add gradient scatter work (and the stages that need memory are checkpointed)."""
        if not self.in_place:
            return [(0, height)]
        rows = max(1, min(height, budget // max(1, bytes_per_row)))
        return [(r, min(r + rows, height)) for r in range(0, height, rows)]


class FrameGroups:
    """Consecutive groups of the ``b*t`` frames of a frame batch (frame ``j`` is sample ``j // t``, time ``j % t``).

    Args:
        batch (int): Samples ``b``.
        num_seq (int): Frames per sample ``t``.
        height (int): Frame height.
        width (int): Frame width.
        channels (int): Feature channels used to size the groups.
        budget (int): Bytes of one group's float32 ``(frames, channels, h, w)`` map (at least one frame).
    """

    def __init__(self, batch: int, num_seq: int, height: int, width: int, channels: int, budget: int) -> None:
        self.batch, self.num_seq = batch, num_seq
        per_group = max(1, budget // (4 * channels * height * width))
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

    def centre_frames(self, groups: list[torch.Tensor]) -> list[torch.Tensor]:
        """The centre frame (1, ...) of every sample, in sample order."""
        t = self.num_seq
        return [self.frame(groups, i * t + t // 2) for i in range(self.batch)]

    def samples(self, group: int) -> torch.Tensor:
        """Sample index of every frame of a group."""
        s, e = self.bounds[group]
        return torch.arange(s, e) // self.num_seq

    def gather(self, groups: list[torch.Tensor]) -> torch.Tensor:
        """Grouped tensor -> one (b*t, ...) tensor."""
        return groups[0] if len(groups) == 1 else torch.cat(groups)

    def buffers(self, channels: int, like: torch.Tensor, mode: ExecutionMode) -> list[torch.Tensor | None]:
        """Destinations for a long-lived grouped map: per-group views of one channels-last (b*t, channels, h, w)
        tensor (one allocation, outside the recycled heap) in place, else Nones (results are new tensors)."""
        if not mode.in_place:
            return [None] * len(self.bounds)
        h, w = like.shape[-2:]
        full = like.new_empty((self.batch * self.num_seq, h, w, channels)).permute(0, 3, 1, 2)
        return self.split(full)


def frame_conv(
    conv: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None, with_bias: bool = True
) -> torch.Tensor:
    """A per-frame Conv3d (kernel depth 1) or a Conv2d applied to a (n, c, h, w) frame batch as a 2-D convolution.

    Args:
        conv (nn.Module): The convolution (its padding, groups and, unless overridden, weight and bias).
        x (Tensor): Frames (n, c_in, h, w).
        weight (Tensor | None): 4-D weight to use instead of the module's (e.g. an input-channel slice).
        with_bias (bool): Add the module's bias. Default: True.

    Returns:
        Tensor: (n, c_out, h, w).
    """
    weight = conv.weight if weight is None else weight
    if weight.dim() == 5:
        weight = weight.squeeze(2)
    return F.conv2d(x, weight, conv.bias if with_bias else None, padding=conv.padding[-2:], groups=conv.groups)


def conv3x3_rows(
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

    Args:
        x (Tensor): Rows ``[x_row0, x_row0 + x.shape[2])`` of the input (n, c, rows, w); they must cover
            ``[lo - 1, hi + 1)`` within the image. Zero rows are added only at the image border.
        x_row0 (int): Image row of ``x``'s first row.
        height (int): Image height.
        lo (int): First output row.
        hi (int): End (exclusive) of the output rows.
        weight (Tensor): (c_out, c_in / groups, 3, 3) or per-frame 3-D (c_out, c_in / groups, 1, 3, 3) weight.
        bias (Tensor | None): (c_out,) bias.
        groups (int): Convolution groups. Default: 1.

    Returns:
        Tensor: (n, c_out, hi - lo, w).
    """
    a, b = max(lo - 1, 0), min(hi + 1, height)
    slab = x[:, :, a - x_row0 : b - x_row0]
    top, bottom = int(lo == 0), int(hi == height)
    if top or bottom:
        slab = F.pad(slab, (0, 0, top, bottom))
    weight = weight.squeeze(2) if weight.dim() == 5 else weight
    return F.conv2d(slab, weight, bias, padding=(0, 1), groups=groups)


def conv_rows(x: torch.Tensor, x_row0: int, height: int, lo: int, hi: int, conv: nn.Module) -> torch.Tensor:
    """:func:`conv3x3_rows` with a 3x3 convolution module's parameters."""
    return conv3x3_rows(x, x_row0, height, lo, hi, conv.weight, conv.bias, conv.groups)


def conv3d_frames(
    conv: nn.Conv3d,
    frames: list[torch.Tensor],
    groups: FrameGroups,
    mode: ExecutionMode,
    out: list[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """A (kt, 3, 3) Conv3d with zero padding in time, applied to grouped frames as 2-D convolutions of frame pairs.

    See :func:`conv3d_frames_weights`; this one takes the module's weight, bias and spatial padding.
    """
    return conv3d_frames_weights(conv.weight, conv.bias, conv.padding[-2:], frames, groups, mode, out=out)


def conv3d_frames_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    frames: list[torch.Tensor],
    groups: FrameGroups,
    mode: ExecutionMode,
    tap_bias: torch.Tensor | None = None,
    out: list[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """A 3-D convolution with temporal zero padding ``kt // 2``, as 2-D convolutions between frames.

    Output frame ``t`` sums, over the kernel's temporal taps ``dt``, the 2-D convolution of input frame
    ``t + dt - kt // 2`` of the same sample (padding frames contribute nothing, so they are skipped).

    Args:
        weight (Tensor): (c_out, c_in, kt, kh, kw) weight.
        bias (Tensor | None): (c_out,) bias.
        padding (tuple[int, int]): Spatial zero padding.
        frames (list[Tensor]): Grouped (frames, c_in, h, w) input.
        groups (FrameGroups): Its grouping.
        mode (ExecutionMode): Arithmetic mode.
        tap_bias (Tensor | None): (c_out, kt) term added once per temporal tap that meets a real frame.
        out (list | None): Grouped destinations (see :meth:`FrameGroups.buffers`); None entries allocate.

    Returns:
        list[Tensor]: Grouped (frames, c_out, h', w') output.
    """
    t = groups.num_seq
    taps = weight.shape[2]
    outs = []
    for g, (s, e) in enumerate(groups.bounds):
        dest = None if out is None else out[g]
        frame_outs = []
        for j in range(s, e):
            # accumulate straight into the destination frame when there is one
            frame_acc = None if dest is None else dest[j - s : j - s + 1]
            started = False
            for dt in range(taps):
                src = j % t + dt - taps // 2
                if not 0 <= src < t:
                    continue
                part = F.conv2d(groups.frame(frames, j - j % t + src), weight[:, :, dt], padding=padding)
                if tap_bias is not None:
                    part = mode.add(part, tap_bias[:, dt].view(1, -1, 1, 1))
                if frame_acc is not None and not started:
                    frame_acc.copy_(part)
                else:
                    frame_acc = part if frame_acc is None else mode.add(frame_acc, part)
                started = True
                del part
            if bias is not None:
                frame_acc = mode.add(frame_acc, bias.view(1, -1, 1, 1))
            frame_outs.append(frame_acc)
        if dest is not None:
            outs.append(dest)
        else:
            outs.append(frame_outs[0] if len(frame_outs) == 1 else torch.cat(frame_outs))
    return outs
