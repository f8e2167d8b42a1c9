"""Synthesis of VSRDB training data from sharp footage, the REDS way.

* Motion blur: the mean of ``N`` consecutive sharp frames, in linear light (the sRGB curve is undone before
  averaging and reapplied after; ``linear=False`` averages the stored values). The sharp target is the
  middle frame of each group, so ``N`` is odd; the clip's frame rate drops by the group stride.
* Downsampling: MATLAB-style bicubic (Keys kernel, a = -0.5) with antialiasing, through basicsr's
  ``matlab_functions.imresize``: the kernel REDS' LR frames were made with and the one
  ``tools/make_demo_data.py`` uses. Frames are first centre-cropped to a multiple of ``scale * 8`` so that the
  LR frames are multiples of 8 (RAFT's feature stride).
* Scene cuts: PySceneDetect's ``ContentDetector`` on small copies of the frames; no clip (hence no averaged
  group and no training window) spans a cut.
* Optional frame interpolation (``factor`` k): k - 1 frames between each pair of consecutive source frames,
  by backward warping both neighbours along RAFT flows (linear-motion approximation of the intermediate
  flows) and blending by temporal distance.

Frame arrays are uint8 or float32 BGR (h, w, 3); float frames are in [0, 1].
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import flow_warp
from basicsr.utils.matlab_functions import imresize

FLOW_STRIDE = 8  # RAFT's feature maps are 1/8 of the input


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve (IEC 61966-2-1) of values in [0, 1] (float32)."""
    values = np.asarray(values, dtype=np.float32)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve to linear values in [0, 1] (float32)."""
    values = np.clip(np.asarray(values, dtype=np.float32), 0, 1)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 with rounding."""
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic downsampling by ``scale`` with antialiasing (MATLAB ``imresize``), float32 in [0, 1]."""
    return imresize(np.asarray(image, dtype=np.float32), 1 / scale).astype(np.float32)


def fit_frame(image: np.ndarray, height: int | None, multiple: int) -> np.ndarray:
    """Resize to ``height`` rows keeping the aspect ratio (if given), then centre-crop to multiples of ``multiple``.

    Raises:
        ValueError: If the frame is smaller than ``multiple`` after resizing.
    """
    if height is not None and height != image.shape[0]:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_CUBIC
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    h, w = image.shape[:2]
    ch, cw = h - h % multiple, w - w % multiple
    if ch == 0 or cw == 0:
        raise ValueError(f'frame of {w}x{h} pixels is smaller than the {multiple}-pixel size multiple')
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return image[y0 : y0 + ch, x0 : x0 + cw]


class SceneCutDetector:
    """PySceneDetect's content detector fed one frame at a time (frames are shrunk to ``width`` pixels first).

    Args:
        threshold (float): ``ContentDetector`` threshold (weighted mean HSV/edge change). Default: 27.
        min_scene_len (int): Shortest scene in frames; closer cuts are merged. Default: 15.
        fps (float): Frame rate given to the detector's timecodes. Default: 25.
        width (int): Width of the copies the detector sees. Default: 256.
    """

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 15, fps: float = 25.0, width: int = 256):
        from scenedetect import ContentDetector

        self.detector = ContentDetector(threshold=threshold, min_scene_len=min_scene_len)
        self.fps, self.width = float(fps), width
        self.count = 0
        self.cuts: list[int] = []

    def _timecode(self, index: int):
        from scenedetect import FrameTimecode

        return FrameTimecode(index, fps=self.fps)

    def add(self, frame: np.ndarray) -> None:
        """Feed the next uint8 BGR frame."""
        if frame.shape[1] > self.width:
            height = max(1, round(frame.shape[0] * self.width / frame.shape[1]))
            frame = cv2.resize(frame, (self.width, height), interpolation=cv2.INTER_AREA)
        cuts = self.detector.process_frame(self._timecode(self.count), frame)
        self.cuts += [c.frame_num for c in cuts]
        self.count += 1

    def scenes(self) -> list[tuple[int, int]]:
        """Finish and return the scenes as ``[first, end)`` frame ranges."""
        if self.count:
            self.cuts += [c.frame_num for c in self.detector.post_process(self._timecode(self.count - 1))]
        bounds = sorted({0, self.count, *(c for c in self.cuts if 0 < c < self.count)})
        return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class ClipSpan:
    """One clip of a scene: output frames ``[first_out, end_out)`` and the source frames they need.

    Attributes:
        first (int): First source frame read (index in the source).
        last (int): Last source frame read (inclusive).
        skip (int): Frames of the (interpolated) stream starting at ``first`` dropped before the first group.
        num_frames (int): Output frames.
    """

    first: int
    last: int
    skip: int
    num_frames: int


def plan_scene_clips(
    scene: tuple[int, int],
    blur_frames: int,
    group_stride: int,
    factor: int,
    clip_length: int,
    clip_stride: int,
    min_clip_length: int,
) -> list[ClipSpan]:
    """Cut one scene into clips.

    The scene's ``L`` source frames become ``(L - 1) * factor + 1`` frames after interpolation; output frame
    ``j`` averages frames ``[j * group_stride, j * group_stride + blur_frames)`` of that stream. Clips of
    ``clip_length`` outputs start every ``clip_stride`` outputs; what is left after the last full clip becomes
    one shorter clip if it has at least ``min_clip_length`` outputs.

    Returns:
        list[ClipSpan]: The scene's clips in order.
    """
    start, end = scene
    stream = (end - start - 1) * factor + 1
    outputs = (stream - blur_frames) // group_stride + 1 if stream >= blur_frames else 0
    ranges = []
    j0 = 0
    while j0 + clip_length <= outputs:
        ranges.append((j0, j0 + clip_length))
        j0 += clip_stride
    tail = ranges[-1][1] if ranges else 0
    if outputs - tail >= min_clip_length:
        ranges.append((tail, outputs))
    spans = []
    for j0, j1 in ranges:
        first_i, last_i = j0 * group_stride, (j1 - 1) * group_stride + blur_frames - 1
        first, last = start + first_i // factor, start + math.ceil(last_i / factor)
        spans.append(ClipSpan(first, last, first_i - (first - start) * factor, j1 - j0))
    return spans


class FlowInterpolator:
    """Intermediate frames along RAFT flow: ``factor - 1`` frames between each pair of consecutive frames.

    For ``t = k / factor`` the flows from the intermediate frame to its neighbours are approximated from the
    two RAFT flows ``F01``, ``F10`` assuming linear motion (``Ft0 = -(1-t) t F01 + t^2 F10``,
    ``Ft1 = (1-t)^2 F01 - t (1-t) F10``); both neighbours are backward-warped (basicsr ``flow_warp``, border
    padding) and blended with weights ``1 - t`` and ``t``. Flows are estimated on sRGB copies no larger than
    ``max_side`` pixels and upsampled; warping and blending happen on the frames given (linear light).

    Args:
        raft (torch.nn.Module): torchvision RAFT (``fmanet_plugin.utils.raft_flow.load_raft``).
        factor (int): Frame-rate multiplier (>= 2).
        max_side (int): Largest side of the frames RAFT sees. Default: 640.
    """

    def __init__(self, raft: torch.nn.Module, factor: int, max_side: int = 640) -> None:
        self.raft, self.factor, self.max_side = raft, factor, max_side
        self.device = next(raft.parameters()).device

    @torch.no_grad()
    def between(self, frame0: np.ndarray, frame1: np.ndarray, linear: bool) -> list[np.ndarray]:
        """The ``factor - 1`` float32 frames strictly between ``frame0`` and ``frame1`` (float32 [0, 1])."""
        from fmanet_plugin.utils.raft_flow import compute_flow

        pair = torch.from_numpy(np.stack([frame0, frame1])).permute(0, 3, 1, 2).to(self.device)
        h, w = pair.shape[-2:]
        srgb = torch.from_numpy(linear_to_srgb(pair.cpu().numpy())).to(self.device) if linear else pair
        shrink = max(h, w) / self.max_side
        if shrink > 1:
            size = (max(FLOW_STRIDE, round(h / shrink)), max(FLOW_STRIDE, round(w / shrink)))
            srgb = F.interpolate(srgb, size=size, mode='area')
        rgb = srgb.flip(1)  # RAFT takes RGB
        flows = compute_flow(self.raft, rgb, rgb.flip(0))  # (2, 2, h', w'): F01, F10
        if flows.shape[-2:] != (h, w):
            gain = torch.tensor([w / flows.shape[-1], h / flows.shape[-2]], device=flows.device).view(1, 2, 1, 1)
            flows = F.interpolate(flows, size=(h, w), mode='bilinear', align_corners=False) * gain
        f01, f10 = flows[0:1], flows[1:2]
        frames = []
        for k in range(1, self.factor):
            t = k / self.factor
            ft0 = -(1 - t) * t * f01 + t * t * f10
            ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
            warped0 = flow_warp(pair[0:1], ft0.permute(0, 2, 3, 1), padding_mode='border')
            warped1 = flow_warp(pair[1:2], ft1.permute(0, 2, 3, 1), padding_mode='border')
            blend = (1 - t) * warped0 + t * warped1
            frames.append(blend[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        return frames


@dataclass
class SynthesisOptions:
    """How sharp frames become training frames (see the module docstring)."""

    blur_frames: int = 5
    group_stride: int | None = None  # default: blur_frames (groups touch, a 360-degree shutter)
    linear: bool = True
    scale: int = 4
    interpolator: FlowInterpolator | None = None

    @property
    def stride(self) -> int:
        return self.group_stride or self.blur_frames

    @property
    def factor(self) -> int:
        return self.interpolator.factor if self.interpolator is not None else 1


class ClipSynthesizer:
    """Turns the sharp source frames ``span.first .. span.last`` of one clip into training frames, streaming.

    Frames are pushed one at a time (:meth:`push`); at most ``blur_frames`` (interpolated) frames are held.

    Args:
        span (ClipSpan): The clip.
        options (SynthesisOptions): Blur, stride, interpolation and scale.
    """

    def __init__(self, span: ClipSpan, options: SynthesisOptions) -> None:
        self.span, self.options = span, options
        self.group: deque = deque(maxlen=options.blur_frames)
        self.previous = None
        self.index = 0  # position in the (interpolated) stream
        self.emitted = 0

    @property
    def complete(self) -> bool:
        return self.emitted == self.span.num_frames

    def push(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Feed the next uint8 BGR source frame.

        Returns:
            list[tuple[ndarray, ndarray, ndarray]]: The uint8 sharp HR, sharp LR and blurry LR frames completed
            by this frame (none once the clip is complete).
        """
        linear, interpolator = self.options.linear, self.options.interpolator
        current = np.asarray(frame, dtype=np.float32) / 255
        current = srgb_to_linear(current) if linear else current
        items = []
        if self.previous is not None and interpolator is not None:
            items = [(None, middle) for middle in interpolator.between(self.previous, current, linear)]
        items.append((frame, current))
        self.previous = current
        outputs = []
        for item in items:
            outputs += self._add(item)
        return outputs

    def _add(self, item: tuple[np.ndarray | None, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n, stride, linear = self.options.blur_frames, self.options.stride, self.options.linear
        local = self.index - self.span.skip
        self.index += 1
        if local < 0 or self.complete:
            return []
        self.group.append(item)
        if local < n - 1 or (local - (n - 1)) % stride:
            return []
        original, value = self.group[n // 2]
        if original is None:  # an interpolated middle frame
            original = to_uint8(linear_to_srgb(value) if linear else value)
        mean = np.mean([v for _, v in self.group], axis=0)
        blurry = linear_to_srgb(mean) if linear else mean
        sharp_lr = downsample(np.asarray(original, dtype=np.float32) / 255, self.options.scale)
        self.emitted += 1
        return [(original, to_uint8(sharp_lr), to_uint8(downsample(blurry, self.options.scale)))]
