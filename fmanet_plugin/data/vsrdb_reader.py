"""Reading VSRDB frames and flows (disk or LMDB, or a folder of videos on disk) with clear errors.

Stream layout: see :mod:`fmanet_plugin.data.vsrdb_clips`. A video is decoded by the package's one video reader
(:class:`~fmanet_plugin.utils.frame_io.FrameSource`); test windows only, as each read decodes a clip.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from fmanet_plugin.data.vsrdb_video_clips import list_videos
from fmanet_plugin.utils.frame_io import FrameSource
from fmanet_plugin.utils.video_io import count_video_frames

import numpy as np
from basicsr.utils import FileClient, imfrombytes

_LMDB_CLIENTS: dict[tuple[int, str], FileClient] = {}


class VSRDBReader:
    """Reads frames and flows through basicsr's FileClient, created lazily (once per worker process).

    A disk stream whose folder holds videos (:func:`list_videos`) is read through
    :class:`~fmanet_plugin.utils.frame_io.FrameSource`: a clip is decoded whole when one of its frames is first
    asked for, and only the current clip of each stream is kept (test windows read a clip in order).

    Args:
        roots (dict[str, str]): Stream name (``lq``, ``gt``, ``lq_sharp``, ``flow``) -> folder or ``.lmdb``.
        io_backend (dict): ``{'type': 'disk' | 'lmdb', ...}`` (extra keys go to the FileClient).
        filename_ext (str): Image file extension on disk.
        owner (str): Dataset class name for error messages.
    """

    def __init__(self, roots: dict[str, str], io_backend: dict, filename_ext: str, owner: str):
        self.roots = roots
        self.io_backend = dict(io_backend)
        self.backend = self.io_backend.pop('type')
        if self.backend not in ('disk', 'lmdb'):
            raise ValueError(f"{owner}: io_backend type must be 'disk' or 'lmdb', got {self.backend!r}")
        if self.backend == 'lmdb':
            for name, root in roots.items():
                if not Path(root, 'data.mdb').is_file():
                    raise FileNotFoundError(f"{owner}: option 'dataroot_{name}' = '{root}' is not an LMDB folder")
        self.ext = filename_ext
        self.owner = owner
        self.client = None
        self.videos: dict[str, dict[str, Path]] = {}
        if self.backend == 'disk':
            videos = {stream: list_videos(root, owner) for stream, root in roots.items() if stream != 'flow'}
            self.videos = {stream: clips for stream, clips in videos.items() if clips}
        self._decoded: dict[str, tuple[str, dict[str, np.ndarray]]] = {}

    def _video_frame(self, stream: str, clip: str, stem: str) -> np.ndarray:
        """Frame ``stem`` of ``clip`` from the stream's video, uint8 BGR (h, w, 3)."""
        path = self.videos[stream].get(clip)
        if path is None:
            raise FileNotFoundError(f"{self.owner}: no {stream} video of clip '{clip}' in '{self.roots[stream]}'")
        if stream not in self._decoded or self._decoded[stream][0] != clip:
            self._decoded.pop(stream, None)  # free the previous clip before decoding the next
            frames = dict(FrameSource(str(path)))
            expected = count_video_frames(path)
            if len(frames) != expected:
                raise ValueError(
                    f"{self.owner}: video '{path}' decoded to {len(frames)} frames, its stream holds {expected}"
                )
            self._decoded[stream] = (clip, frames)
        frame = self._decoded[stream][1].get(stem)
        if frame is None:
            raise FileNotFoundError(
                f"{self.owner}: video '{path}' has no frame {stem} (frames are named %08d by index, "
                f'{len(self._decoded[stream][1])} in all)'
            )
        return frame

    def _lmdb_client(self, root: str) -> FileClient:
        # py-lmdb refuses to open one environment twice in a process (e.g. train and val datasets on the same
        # LMDB), so each database gets one FileClient per process, shared by all readers.
        key = (os.getpid(), root)
        if key not in _LMDB_CLIENTS:
            _LMDB_CLIENTS[key] = FileClient('lmdb', db_paths=[root], client_keys=['default'], **self.io_backend)
        return _LMDB_CLIENTS[key]

    def _get(self, stream: str, clip: str, name: str, ext: str) -> tuple[bytes, str]:
        if self.backend == 'lmdb':
            where = f"key '{clip}/{name}' in LMDB '{self.roots[stream]}'"
            content = self._lmdb_client(self.roots[stream]).get(f'{clip}/{name}', 'default')
            if content is None:
                raise KeyError(f'{self.owner}: missing {stream} {where}')
            return content, where
        path = str(Path(self.roots[stream], clip, f'{name}.{ext}'))
        if self.client is None:
            self.client = FileClient('disk', **self.io_backend)
        try:
            return self.client.get(path), f"file '{path}'"
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.owner}: missing {stream} file '{path}'") from None

    def image(self, stream: str, clip: str, stem: str) -> np.ndarray:
        """Read one frame as a BGR float32 array (h, w, 3) in [0, 1]."""
        if stream in self.videos:
            return self._video_frame(stream, clip, stem).astype(np.float32) / 255.0
        content, where = self._get(stream, clip, stem, self.ext)
        img = imfrombytes(content, float32=False)
        if img is None:
            raise ValueError(f'{self.owner}: {where} could not be decoded as an image')
        return img.astype(np.float32) / 255.0

    def flow(self, clip: str, centre: str, neighbour: str, lr_shape: tuple[int, int]) -> np.ndarray:
        """Read the flow from ``centre`` to ``neighbour`` as float32 (h, w, 2); ``lr_shape`` = (h, w)."""
        content, where = self._get('flow', clip, f'{centre}_{neighbour}', 'npy')
        expected = (*lr_shape, 2)
        if self.backend == 'lmdb':
            flow = np.frombuffer(content, dtype=np.float32)
            if flow.size != np.prod(expected):
                raise ValueError(f'{self.owner}: {where} holds {flow.size} float32 values, expected {expected}')
            flow = flow.reshape(expected).copy()
        else:
            if not content.startswith(b'\x93NUMPY'):
                raise ValueError(
                    f'{self.owner}: {where} is not a .npy file (no NumPy header; expected float32 (h, w, 2))'
                )
            try:
                flow = np.load(io.BytesIO(content), allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise ValueError(f'{self.owner}: {where} is not a readable .npy array ({err})') from None
            if not isinstance(flow, np.ndarray):
                raise ValueError(f'{self.owner}: {where} is not a .npy array (an .npz archive?)')
            if flow.shape != expected:
                raise ValueError(
                    f'{self.owner}: {where} has shape {flow.shape}, expected {expected} (LR frame size, 2)'
                )
            flow = flow.astype(np.float32, copy=False)
        if not np.isfinite(flow).all():
            raise ValueError(f'{self.owner}: {where} holds {np.size(flow) - np.isfinite(flow).sum()} NaN/inf values')
        return flow
