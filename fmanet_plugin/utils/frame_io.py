"""Frames in: a folder of images or a video file, read lazily as uint8 BGR arrays (:class:`FrameSource`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fmanet_plugin.utils.video_io import VideoReader

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


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
