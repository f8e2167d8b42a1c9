"""Restore a whole clip with any BasicSR video network: sliding-window or recurrent, in one function.

Two kinds of video networks (``model_kind``):

* ``'sliding'``: ``net(lq)`` with ``lq`` (b, t, c, h, w), ``t`` odd, returns the restored centre frame
  (b, c, s*h, s*w) (or a dict whose ``'output'`` is that, like FMA-Net). Each frame of the clip is restored from
  the window around it; at the clip ends the window is edge-padded (the end frame repeated, basicsr's
  ``generate_frame_indices(padding='replicate')``), the protocol of ../shared/SPEC.md.
* ``'recurrent'``: ``net(lq)`` returns every frame (b, t, c, s*h, s*w). The whole clip is one sequence, or,
  when it does not fit in memory, overlapping pieces (``chunk`` / ``overlap`` below).

The kind is told by the network's class: an instance of one of the classes registered in basicsr's
``ARCH_REGISTRY`` under the names in ``SLIDING_WINDOW_ARCHS`` / ``RECURRENT_ARCHS``, subclasses included (e.g.
the plugin's ``SmallFrameBasicVSR``); ``DataParallel`` / DDP wrappers are unwrapped. Probing the output shape is
not used: a sliding-window network accepts only its own window length (EDVR's TSA fusion, FMA-Net)
and may need sizes that are multiples of 4, so a probe can fail for reasons unrelated to the kind. Other networks
pass ``kind`` explicitly.
"""

from __future__ import annotations

import torch
from basicsr.data.data_util import generate_frame_indices
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

SLIDING_WINDOW_ARCHS = ('FMANet', 'EDVR')
RECURRENT_ARCHS = ('BasicVSR', 'IconVSR', 'BasicVSRPlusPlus')


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else net


def model_kind(net: nn.Module) -> str:
    """``'sliding'`` or ``'recurrent'`` from the network's (registered) class.

    Args:
        net (nn.Module): A video network, possibly wrapped in ``DataParallel`` / DDP.

    Returns:
        str: ``'sliding'`` (centre frame out) or ``'recurrent'`` (all frames out).
    """
    net = _unwrap(net)
    for kind, names in (('sliding', SLIDING_WINDOW_ARCHS), ('recurrent', RECURRENT_ARCHS)):
        if isinstance(net, tuple(ARCH_REGISTRY.get(name) for name in names)):
            return kind
    raise ValueError(
        f"unknown video network '{type(net).__name__}': pass kind='sliding' (centre frame out) or kind='recurrent' "
        f'(all frames out); known: {SLIDING_WINDOW_ARCHS + RECURRENT_ARCHS}'
    )


def window_length(net: nn.Module) -> int:
    """Input frames of a sliding-window network: FMA-Net's ``num_seq``, EDVR's ``2 * center_frame_idx + 1``."""
    net = _unwrap(net)
    if hasattr(net, 'num_seq'):
        return int(net.num_seq)
    if isinstance(net, ARCH_REGISTRY.get('EDVR')):  # EDVR keeps only its centre index; windows are centred
        return 2 * int(net.center_frame_idx) + 1
    raise ValueError(f"cannot tell the window length of '{type(net).__name__}': pass num_frame")


def _centre_frames(net: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    out = net(windows)
    return out['output'] if isinstance(out, dict) else out


def chunk_bounds(num_frames: int, chunk: int, overlap: int, min_piece: int = 1) -> list[tuple[int, int, int, int]]:
    """Pieces of a clip for chunked recurrent restoration.

    The clip is cut into consecutive kept segments of ``chunk`` frames (the last may be shorter); each is
    restored inside a piece that extends it by up to ``overlap`` frames on each side (less at the clip ends).
    A piece shorter than ``min_piece`` frames is widened (forwards, then backwards) to ``min_piece`` frames or the
    whole clip.

    Args:
        num_frames (int): Frames in the clip.
        chunk (int): Kept frames per piece (>= 1).
        overlap (int): Context frames on each side of a kept segment (>= 0).
        min_piece (int): Fewest frames the network takes (IconVSR: ``2 * temporal_padding + 1``). Default: 1.

    Returns:
        list[tuple[int, int, int, int]]: ``(piece_start, piece_end, keep_start, keep_end)`` (end exclusive,
        clip frame indices), the kept segments covering ``0 .. num_frames - 1`` once, in order.
    """
    if chunk < 1 or overlap < 0:
        raise ValueError(f'chunk must be >= 1 and overlap >= 0, got chunk={chunk}, overlap={overlap}')
    bounds = []
    for keep_start in range(0, num_frames, chunk):
        keep_end = min(keep_start + chunk, num_frames)
        piece_start, piece_end = max(0, keep_start - overlap), min(num_frames, keep_end + overlap)
        if piece_end - piece_start < min_piece:
            piece_end = min(num_frames, piece_start + min_piece)
            piece_start = max(0, piece_end - min_piece)
        bounds.append((piece_start, piece_end, keep_start, keep_end))
    return bounds


@torch.no_grad()
def restore_clip(
    net: nn.Module,
    lq: torch.Tensor,
    kind: str | None = None,
    num_frame: int | None = None,
    chunk: int | None = None,
    overlap: int = 0,
    batch_size: int = 1,
) -> torch.Tensor:
    """Restore every frame of a clip.

    Sliding-window networks see, for frame ``i``, the ``num_frame`` frames around ``i`` with the clip ends
    repeated (``generate_frame_indices(i, t, num_frame, padding='replicate')``), ``batch_size`` windows per call.
    Recurrent networks see the whole clip in one call, or, with ``chunk``, the pieces of ``chunk_bounds``: at
    most ``chunk + 2 * overlap`` frames per call; each piece's ``overlap`` context frames are restored and
    discarded on both sides and only its kept ``chunk`` frames go to the output. A frame then sees at least
    ``overlap`` frames of context in each direction (or the clip end). Equality with the whole-clip result:

    * exact when ``overlap >= t - 1`` (every piece is the whole clip) and, for any network whose output frame
      ``i`` depends only on input frames ``i - r .. i + r``, whenever ``overlap >= r``;
    * for bidirectional recurrent networks (BasicVSR, IconVSR, BasicVSR++) the hidden state carries information
      over the whole clip, so smaller overlaps give close, not equal, results; the difference shrinks as the
      overlap grows. Measured on the 8-frame demo validation clip (LR 32 x 40) with chunk 2, at initial
      (untrained) weights of the demo BasicVSR: max |difference| 1.7e-3 (overlap 0), 6.8e-4 (1), 2.9e-4 (2),
      1.4e-4 (3); BasicVSR++: 1.4e-2 (0) to 1.1e-2 (3). Choose the overlap for the network at hand.

    IconVSR pieces are widened to at least ``2 * temporal_padding + 1`` frames (its keyframe padding indexes them).

    Args:
        net (nn.Module): The network, in eval mode, on the device of ``lq``.
        lq (Tensor): LR frames (t, c, h, w) in [0, 1].
        kind (str | None): ``'sliding'`` or ``'recurrent'``; ``None`` asks ``model_kind``.
        num_frame (int | None): Window of a sliding-window network; ``None`` asks ``window_length``.
        chunk (int | None): Recurrent only: kept frames per piece; ``None`` = the whole clip at once.
        overlap (int): Recurrent only: context frames on each side of a piece (used with ``chunk``).
        batch_size (int): Sliding only: windows per forward call.

    Returns:
        Tensor: Restored frames (t, c, s*h, s*w), on the device of ``lq``.
    """
    if lq.dim() != 4:
        raise ValueError(f'lq must be (t, c, h, w), got shape {tuple(lq.shape)}')
    kind = kind or model_kind(net)
    num_frames = lq.size(0)
    if kind == 'sliding':
        num_frame = num_frame or window_length(net)
        if num_frame % 2 == 0:
            raise ValueError(f'num_frame of a sliding-window network must be odd, got {num_frame}')
        frames = []
        for first in range(0, num_frames, batch_size):
            indices = [
                generate_frame_indices(i, num_frames, num_frame, padding='replicate')
                for i in range(first, min(first + batch_size, num_frames))
            ]
            windows = torch.stack([lq[idx] for idx in indices])
            frames.append(_centre_frames(net, windows))
        return torch.cat(frames)
    if kind != 'recurrent':
        raise ValueError(f"kind must be 'sliding' or 'recurrent', got {kind!r}")
    if chunk is None:
        return net(lq.unsqueeze(0))[0]
    # IconVSR pads its keyframe windows by indexing frames up to 2 * temporal_padding: shorter pieces fail.
    min_piece = 2 * _unwrap(net).temporal_padding + 1 if hasattr(_unwrap(net), 'temporal_padding') else 1
    frames = []
    for piece_start, piece_end, keep_start, keep_end in chunk_bounds(num_frames, chunk, overlap, min_piece):
        out = net(lq[piece_start:piece_end].unsqueeze(0))[0]
        frames.append(out[keep_start - piece_start : keep_end - piece_start])
    return torch.cat(frames)
