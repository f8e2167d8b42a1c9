"""Reusable pieces of the evaluation and inference tools: model building and checkpoint loading, temporal
windows with edge padding, tiled forward passes with blending, colour-order handling and atomic writes.

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

import contextlib
import inspect
import logging
import math
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

from fmanet_plugin.utils.official_ckpt import NET_D_PREFIX, NET_R_PREFIX
from fmanet_plugin.utils.video_io import VideoReader

import numpy as np
import torch
from torch import nn

COLOR_ORDERS = ('rgb', 'bgr')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def build_network_from_opt(network_opt: Mapping[str, Any]) -> nn.Module:
    """Build a network from a BasicSR ``network_g``-style dict (``type`` + arguments) through ``ARCH_REGISTRY``.

    Raises:
        ValueError: If ``type`` is missing or not registered.
    """
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    opt = dict(deepcopy(network_opt))
    if 'type' not in opt:
        raise ValueError(f'network options need a "type" key (an ARCH_REGISTRY name), got keys {sorted(opt)}')
    if opt['type'] not in ARCH_REGISTRY:
        raise ValueError(f'network type {opt["type"]!r} is not registered in basicsr ARCH_REGISTRY')
    return build_network(opt)


def read_state_dict(path: str, param_key: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read the network weights of a BasicSR/plugin checkpoint.

    Accepted: ``{'params': ...}`` / ``{'params_ema': ...}`` (BasicSR; also what ``tools/convert_official_ckpt.py``
    writes), or a bare state dict. A ``module.`` prefix (DataParallel) is removed.

    Args:
        path (str): Checkpoint file.
        param_key (str | None): Key to read; ``None`` takes ``params_ema`` if present, else ``params``, else the
            whole file as a state dict.

    Returns:
        tuple[dict[str, Tensor], str]: The state dict and the key it came from (``'<state dict>'`` for bare ones).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no state dict, ``param_key`` is missing, or the file is a released
            (unconverted) FMA-Net checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, Mapping):
        raise ValueError(f'{path}: expected a dict checkpoint, got {type(ckpt).__name__}')
    if param_key is not None:
        if param_key not in ckpt:
            raise ValueError(f'{path}: no {param_key!r} entry (found {sorted(ckpt)[:8]})')
        key = param_key
    else:
        key = next((k for k in ('params_ema', 'params') if k in ckpt), None)
    state = ckpt[key] if key is not None else ckpt
    if (
        'model_D_state_dict' in state
        or 'model_R_state_dict' in state
        or any(k.startswith((NET_D_PREFIX, NET_R_PREFIX)) for k in state)
    ):
        raise ValueError(
            f'{path}: this is a released FMA-Net checkpoint; convert it first with '
            'tools/convert_official_ckpt.py (add --rgb for RGB pipelines)'
        )
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path}: entry {key or "<file>"!r} is not a state dict of tensors')
    state = {(k[len('module.') :] if k.startswith('module.') else k): v for k, v in state.items()}
    return state, key or '<state dict>'


def load_weights(model: nn.Module, path: str, param_key: str | None = None) -> str:
    """Load a checkpoint into ``model`` strictly (every key present, none extra, same shapes).

    Returns:
        str: The checkpoint key that was loaded (see :func:`read_state_dict`).

    Raises:
        ValueError: Listing missing, unexpected and mis-shaped keys, with the file name.
    """
    state, key = read_state_dict(path, param_key)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f'{path} [{key}] does not match the {type(model).__name__} configuration: {err}') from None
    return key


def window_indices(num_frames: int, centre: int, num_seq: int) -> list[int]:
    """Frame indices of the temporal window of ``centre``, edge-padded by repeating the first/last frame.

    Args:
        num_frames (int): Frames in the clip.
        centre (int): Index of the centre frame.
        num_seq (int): Window length (odd).

    Returns:
        list[int]: ``num_seq`` indices ``clamp(centre - num_seq//2 + k, 0, num_frames - 1)``.
    """
    half = num_seq // 2
    return [min(max(centre + k, 0), num_frames - 1) for k in range(-half, half + 1)]


def iter_windows(frames: Iterable[Any], num_seq: int) -> Iterator[list[Any]]:
    """Stream the edge-padded temporal windows of a sequence, one per input frame, holding ``num_seq`` frames.

    Equivalent to ``[frames[i] for i in window_indices(n, c, num_seq)]`` for ``c = 0 .. n-1`` without knowing
    ``n`` in advance (for videos read frame by frame).

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


def autocast_context(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` in {'fp16', 'bf16'} on CUDA; a no-op context for ``None``.

    Raises:
        ValueError: For an unknown ``amp`` or mixed precision requested on a non-CUDA device.
    """
    if amp is None:
        return contextlib.nullcontext()
    dtypes = {'fp16': torch.float16, 'bf16': torch.bfloat16}
    if amp not in dtypes:
        raise ValueError(f"amp must be None, 'fp16' or 'bf16', got {amp!r}")
    if device.type != 'cuda':
        raise ValueError(f'--{amp} (autocast) is for CUDA devices; got device {device}')
    return torch.autocast('cuda', dtype=dtypes[amp])


class CentreFrameRestorer:
    """Callable restoring centre frames with an FMA-Net-style model (tiling, autocast, colour order).

    Args:
        model (nn.Module): Model mapping (b, t, c, h, w) in [0, 1] to a dict with ``output`` (b, c, sh, sw)
            or directly to that tensor.
        scale (int): Upscaling factor.
        model_color (str): Channel order the model was trained on: ``'rgb'`` (BasicSR, or a released
            checkpoint converted with ``--rgb``) or ``'bgr'`` (a released checkpoint converted without it).
        tile (int | None): LR tile size (see :func:`tiled_forward`). Default: None.
        tile_overlap (int): Tile overlap in LR pixels. Default: 16.
        amp (str | None): ``'fp16'``/``'bf16'`` autocast on CUDA. Default: None.
    """

    def __init__(
        self,
        model: nn.Module,
        scale: int,
        model_color: str = 'rgb',
        tile: int | None = None,
        tile_overlap: int = 16,
        amp: str | None = None,
    ) -> None:
        if model_color not in COLOR_ORDERS:
            raise ValueError(f'model_color must be one of {COLOR_ORDERS}, got {model_color!r}')
        self.model = model.eval()
        self.scale = scale
        self.model_color = model_color
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.amp = amp
        self.device = next(model.parameters()).device
        # FMANet can skip the branches that only training needs when told which outputs are wanted
        accepts_outputs = 'outputs' in inspect.signature(model.forward).parameters
        self.forward_kwargs = {'outputs': ('output',)} if accepts_outputs else {}

    def _forward(self, lq: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.amp):
            out = self.model(lq, **self.forward_kwargs)
        return out['output'] if isinstance(out, Mapping) else out

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, input_color: str = 'rgb') -> torch.Tensor:
        """Restore the centre frame.

        Args:
            lq (Tensor): LR window (b, t, c, h, w) in [0, 1], channels in ``input_color`` order.
            input_color (str): ``'rgb'`` or ``'bgr'``. Default: ``'rgb'``.

        Returns:
            Tensor: (b, c, s*h, s*w) float32 on the model's device, channels in ``input_color`` order.
        """
        swap = input_color != self.model_color
        lq = lq.to(self.device)
        if swap:
            lq = lq.flip(2)
        out = tiled_forward(self._forward, lq, self.scale, self.tile, self.tile_overlap)
        return out.flip(1) if swap else out


def get_tool_logger(log_file: str | None = None) -> logging.Logger:
    """basicsr's root logger at INFO level (basicsr sets the level only when given a log file)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger(log_level=logging.INFO, log_file=log_file)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def resolve_device(name: str | None) -> torch.device:
    """``'auto'``/None -> CUDA if available else CPU; otherwise ``torch.device(name)`` (checked to exist)."""
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r} requested but CUDA is not available')
    return device


def publish_temp_file(tmp: str, path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the usual permissions, then rename it to ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        publish_temp_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(text.encode('utf-8'), path)


def atomic_imwrite(img: Any, path: str) -> None:
    """Write a uint8 BGR image with basicsr's ``imwrite`` under a temporary name, then rename it to ``path``.

    Raises:
        OSError: If OpenCV cannot encode the image for ``path``'s extension (basicsr's ``IOError``).
    """
    from basicsr.utils import imwrite

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        imwrite(img, tmp, auto_mkdir=False)  # raises IOError when OpenCV cannot encode
        publish_temp_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def format_number(value: float | None, digits: int) -> str:
    """Fixed-point text for tables; '-' for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{digits}f}'


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', path.name)]


class FrameSource:
    """Frames of a folder of images or of a video file, read lazily as uint8 BGR (h, w, 3) arrays.

    Videos are decoded by :class:`fmanet_plugin.utils.video_io.VideoReader` (PyAV: upright, streaming).

    Args:
        path (str): Folder or video file.
        start (float | None): Video only: first time to read, in seconds. Default: None.
        end (float | None): Video only: time to stop at (exclusive), in seconds. Default: None.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it holds no readable frame (empty folder, unopenable video), or a time range is given
            for a folder.
    """

    def __init__(self, path: str, start: float | None = None, end: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f'input not found: {path}')
        self.fps = None
        self.video = None
        if self.path.is_dir():
            if start is not None or end is not None:
                raise ValueError(f'--start/--end apply to video input; {path} is a folder of frames')
            self.files = sorted(
                (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key
            )
            if not self.files:
                raise ValueError(f'input folder {path} holds no image ({", ".join(IMAGE_EXTENSIONS)})')
            self.names = [p.stem for p in self.files]
            self.count = len(self.files)
        else:
            self.video = VideoReader(self.path, start, end)
            self.fps = self.video.fps
            self.count = self.video.expected_count()
            self.files = None

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, frame)``; ``name`` is the file stem, or the 0-based index as ``%08d`` for videos."""
        shape = None
        for name, frame in self._frames():
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise ValueError(f'{self.path}: frame {name} has shape {frame.shape}, the first frame {shape}')
            yield name, frame

    def _frames(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.files is not None:
            from basicsr.utils import FileClient, imfrombytes

            client = FileClient('disk')
            for file in self.files:
                img = imfrombytes(client.get(str(file)), flag='color')
                if img is None:
                    raise ValueError(f'cannot decode image {file}')
                yield file.stem, img
            return
        for index, _, frame in self.video:
            yield f'{index:08d}', frame
