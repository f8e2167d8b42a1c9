"""Reads a VSRDB window (blurry LR, sharp HR, sharp LR, flow) for one dataset item with the BasicSR datasets' window
readers (``fmanet_plugin.data.vsrdb_reader``, ``fmanet_plugin.data.vsrdb_windows``)."""

from __future__ import annotations

from fmanet_plugin.data.vsrdb_reader import VSRDBReader
from fmanet_plugin.data.vsrdb_windows import read_test_window, read_training_window
from fmanet_plugin.mm.registry import TRANSFORMS

from mmcv.transforms import BaseTransform

WINDOWS = ('random', 'replicate')


@TRANSFORMS.register_module()
class LoadVSRDBFrames(BaseTransform):
    """Loads the frames of one ``fmanet_plugin.VSRDBDataset`` item.

    ``window='random'`` (training, as BasicSR's ``VSRDBDataset``): a random centre whose whole window lies in the
    item's clip; reads ``lq``, ``lq_sharp`` and ``gt`` for every frame of the window and ``flow`` (centre to each
    frame, zero at the centre) when the dataset has a flow root. ``window='replicate'`` (test, as
    ``VSRDBTestDataset``): the window centred at the item's frame, end frames repeated; reads ``lq`` and the centre
    ``gt`` when available.

    Args:
        window (str): ``'random'`` or ``'replicate'``. Default: ``'random'``.
        scale (int): HR / LR size ratio (checked). Default: 4.

    Adds ``lq``, ``lq_sharp`` (lists of (h, w, 3) BGR float32 in [0, 1]), ``gt`` (list of (s*h, s*w, 3); test:
    one array), ``flow`` (list of (h, w, 2) float32 (x, y)), ``key`` (``'clip/frame'``), ``frame``,
    ``num_frames``; test also sets ``frame_idx``.
    """

    def __init__(self, window: str = 'random', scale: int = 4) -> None:
        if window not in WINDOWS:
            raise ValueError(f'LoadVSRDBFrames: window must be one of {WINDOWS}, got {window!r}')
        self.window = window
        self.scale = scale
        self._readers: dict = {}

    def _reader(self, results: dict) -> VSRDBReader:
        # items are unpickled per access: keep one reader (and its file client) per distinct configuration
        key = (tuple(sorted(results['roots'].items())), repr(sorted(results['io_backend'].items())))
        if key not in self._readers:
            self._readers[key] = VSRDBReader(
                results['roots'], results['io_backend'], results['filename_ext'], type(self).__name__
            )
        return self._readers[key]

    def transform(self, results: dict) -> dict:
        reader, name = self._reader(results), type(self).__name__
        clip, stems, num_frame = results['clip'], results['stems'], results['num_frame']
        if self.window == 'random':
            results.update(read_training_window(reader, clip, stems, num_frame, self.scale, name))
        else:
            results.update(read_test_window(reader, clip, stems, results['frame_idx'], num_frame, self.scale, name))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(window={self.window!r}, scale={self.scale})'
