"""The temporal windows of the VSRDB training and test datasets (shared by BasicSR's datasets and the OpenMMLab
pipeline).

Training reads the window of a random centre lying wholly inside the clip (:func:`read_training_window`); test
reads the window of a given frame, edge-padded by repeating the first/last frame (basicsr's
``generate_frame_indices(padding='replicate')``, :func:`read_test_window`); :func:`iter_windows` streams the same
edge-padded windows from frames read one by one.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from fmanet_plugin.data.vsrdb_reader import VSRDBReader

import numpy as np
from basicsr.data.data_util import generate_frame_indices


def check_frame_sizes(frames: list[np.ndarray], names: list[str], stream: str, owner: str) -> None:
    """Raise a ValueError naming the first frame whose size differs from ``frames[0]``'s (all frames of a clip
    must have one size).

    Args:
        frames (list[np.ndarray]): (h, w, c) images.
        names (list[str]): ``clip/frame`` of each, for the message.
        stream (str): ``'LR'`` or ``'HR'``, for the message.
        owner (str): Who reads them, for the message.
    """
    for name, frame in zip(names, frames):
        if frame.shape[:2] != frames[0].shape[:2]:
            raise ValueError(
                f'{owner}: {stream} frame {name} has size {frame.shape[:2]}, expected {frames[0].shape[:2]} like '
                f'{names[0]} (all frames of a clip must have one size)'
            )


def check_scale(lr: np.ndarray, hr: np.ndarray, scale: int, hr_where: str, owner: str) -> None:
    """Raise a ValueError naming ``hr_where`` unless ``hr`` is exactly ``scale`` times ``lr`` in size."""
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise ValueError(
            f'{owner}: HR frame {hr_where} has size {hr.shape[:2]}, expected {scale} x the LR size {lr.shape[:2]}'
        )


def read_training_window(
    reader: VSRDBReader, clip: str, stems: list[str], num_frame: int, scale: int, owner: str
) -> dict[str, Any]:
    """Read the window of a random centre lying wholly inside ``clip`` (one ``random.randint`` call).

    Args:
        reader (VSRDBReader): Reader with ``lq``, ``gt``, ``lq_sharp`` (and optionally ``flow``) roots.
        clip (str): Clip name. stems (list[str]): Its frame stems in temporal order.
        num_frame (int): Window length (odd, at most ``len(stems)``).
        scale (int): HR / LR size ratio (checked). owner (str): Class name for messages.

    Returns:
        dict: ``lq``, ``lq_sharp`` (lists of (h, w, 3) BGR float32 in [0, 1]), ``gt`` (list of (s*h, s*w, 3)),
        ``flow`` (list of (h, w, 2), centre to each frame, zero at the centre; only with a flow root), ``key``
        (``'clip/frame'`` of the centre), ``frame``, ``frame_idx``, ``num_frames``.
    """
    radius = num_frame // 2
    centre = random.randint(radius, len(stems) - 1 - radius)
    window = stems[centre - radius : centre + radius + 1]
    window_data = _centre_info(clip, stems, centre)
    lqs = [reader.image('lq', clip, s) for s in window]
    lq_sharps = [reader.image('lq_sharp', clip, s) for s in window]
    gts = [reader.image('gt', clip, s) for s in window]
    lr_shape = lqs[0].shape
    for stem, lq, lq_sharp, gt in zip(window, lqs, lq_sharps, gts):
        if lq.shape != lr_shape or lq_sharp.shape != lr_shape:
            raise ValueError(
                f'{owner}: LR frames of {clip}/{stem} have sizes {lq.shape[:2]} (lq), {lq_sharp.shape[:2]} '
                f'(lq_sharp), expected {lr_shape[:2]} like {clip}/{window[0]}'
            )
        check_scale(lq, gt, scale, f'{clip}/{stem}', owner)
    window_data.update(lq=lqs, lq_sharp=lq_sharps, gt=gts)
    if 'flow' in reader.roots:
        zero = np.zeros((*lr_shape[:2], 2), np.float32)
        window_data['flow'] = [
            zero if i == radius else reader.flow(clip, window[radius], s, lr_shape[:2]) for i, s in enumerate(window)
        ]
    return window_data


def read_test_window(
    reader: VSRDBReader, clip: str, stems: list[str], frame_idx: int, num_frame: int, scale: int, owner: str
) -> dict[str, Any]:
    """Read the edge-padded window centred at ``frame_idx`` and, when the reader has a ``gt`` root, its HR frame.

    Returns:
        dict: ``lq`` (list of ``num_frame`` (h, w, 3) BGR float32 in [0, 1]), ``gt`` ((s*h, s*w, 3), centre frame;
        only with a gt root), ``key``, ``frame``, ``frame_idx``, ``num_frames``.
    """
    indices = generate_frame_indices(frame_idx, len(stems), num_frame, padding='replicate')
    window_data = _centre_info(clip, stems, frame_idx)
    window_data['lq'] = [reader.image('lq', clip, stems[i]) for i in indices]
    check_frame_sizes(window_data['lq'], [f'{clip}/{stems[i]}' for i in indices], 'LR', owner)
    if 'gt' in reader.roots:
        window_data['gt'] = reader.image('gt', clip, stems[frame_idx])
        check_scale(window_data['lq'][num_frame // 2], window_data['gt'], scale, window_data['key'], owner)
    return window_data


def _centre_info(clip: str, stems: list[str], centre: int) -> dict[str, Any]:
    return dict(key=f'{clip}/{stems[centre]}', frame=stems[centre], frame_idx=centre, num_frames=len(stems))


def iter_windows(frames: Iterable[Any], num_seq: int) -> Iterator[list[Any]]:
    """Stream the edge-padded temporal windows of a sequence, one per input frame, holding ``num_seq`` frames.

    The windows of :func:`read_test_window` (basicsr's ``generate_frame_indices(padding='replicate')``) without
    knowing the number of frames in advance (for videos read frame by frame).

    Args:
        frames (Iterable): The frames, in order.
        num_seq (int): Window length (odd).

    Yields:
        list: The window of the next centre frame.
    """
    half = num_seq // 2
    buffer: deque = deque()
    read = emitted = 0
    for frame in frames:
        if read == 0:
            buffer.extend([frame] * half)
        buffer.append(frame)
        read += 1
        if len(buffer) == num_seq:
            yield list(buffer)
            buffer.popleft()
            emitted += 1
    while emitted < read:
        buffer.append(buffer[-1])
        if len(buffer) == num_seq:
            yield list(buffer)
            buffer.popleft()
            emitted += 1
