"""Scoring any BasicSR video network on a VSRDB test set: option files in, per-clip metrics out.

Shared by ``tools/test.py`` and ``tools/benchmark.py``. A *run's* option file (a test file, or the training
file of any run: ``options/demo_stage2.yml``, ``options/baselines/*.yml``, basicsr's REDS files) gives the
network (``network_g``) and the test sets (every ``datasets`` entry but ``train``: ``val``, ``test_*``). Each
test set is read from its ``dataroot_lq`` / ``dataroot_gt`` (disk or LMDB), ``meta_info_file``, ``clips`` and
``exclude_clips`` options, whatever its dataset ``type`` (the frames, not the dataset class, are the test set).

Every clip is restored with :func:`fmanet_plugin.utils.clip_restoration.restore_clip`: sliding-window networks
(FMA-Net, EDVR) frame by frame on edge-padded windows, recurrent networks (BasicVSR, IconVSR, BasicVSR++) over
the whole clip or in chunks with overlap. The frames are scored by
:class:`fmanet_plugin.metrics.clip_eval.ClipEvaluator`; the frames left out at the clip ends (``skip``) are the
same for every model, whatever its window.
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Callable
from dataclasses import dataclass

from fmanet_plugin.data.vsrdb_clips import open_dataset, select_clips
from fmanet_plugin.data.vsrdb_windows import check_frame_sizes
from fmanet_plugin.metrics.clip_eval import ClipEvaluator
from fmanet_plugin.utils.atomic_io import atomic_imwrite
from fmanet_plugin.utils.clip_restoration import model_kind, restore_clip, window_length
from fmanet_plugin.utils.restorer import CentreFrameRestorer

import numpy as np
import torch
from basicsr.utils import img2tensor, tensor2img
from torch import nn
from tqdm import tqdm

# frames left out at each clip end for every model: the released FMA-Net protocol's N = num_seq // 2 with T = 3
DEFAULT_SKIP = 1
# dataset options that say which frames form a test set (the dataset type and its other options do not matter)
TEST_SET_KEYS = ('dataroot_lq', 'dataroot_gt', 'meta_info_file', 'clips', 'exclude_clips', 'filename_tmpl',
                 'filename_ext', 'io_backend')  # fmt: skip


def test_sets(opt: dict, source: str) -> dict[str, dict]:
    """The test sets of a run's options: every ``datasets`` entry except ``train`` (phase ``train``).

    Args:
        opt (dict): Options of a test or training run.
        source (str): The option file, for messages.

    Returns:
        dict[str, dict]: Test-set name (its ``name`` option, else its key) -> options for :func:`open_test_set`.

    Raises:
        ValueError: If the options have no test or validation set.
    """
    sets = {}
    for key, dataset_opt in (opt.get('datasets') or {}).items():
        if key == 'train' or dataset_opt.get('phase') == 'train':
            continue
        if 'dataroot_lq' not in dataset_opt:
            raise ValueError(f'{source}: datasets.{key}.dataroot_lq is missing (blurry LR frames of the test set)')
        name = str(dataset_opt.get('name', key))
        sets[name] = {k: dataset_opt[k] for k in TEST_SET_KEYS if k in dataset_opt}
        sets[name]['name'] = name
    if not sets:
        raise ValueError(f'{source}: no test set (a datasets entry other than train, e.g. datasets.val)')
    return sets


@dataclass
class TestSet:
    """Frames of a test set: ``reader.image(stream, clip, stem)`` (uint8 BGR), ``clips`` (clip -> stems)."""

    name: str
    reader: object
    clips: dict[str, list[str]]

    @property
    def has_gt(self) -> bool:
        return 'gt' in self.reader.roots


def open_test_set(set_opt: dict) -> TestSet:
    """Open a test set from the options returned by :func:`test_sets`."""
    owner = f'test set {set_opt["name"]}'
    opt = {**set_opt, 'io_backend': dict(set_opt.get('io_backend') or {'type': 'disk'})}
    reader, clips = open_dataset(opt, ('lq',), ('gt',), owner)
    clips = select_clips(clips, owner, reader.roots['lq'], only=opt.get('clips'), exclude=opt.get('exclude_clips'))
    return TestSet(set_opt['name'], reader, clips)


class ClipRestorer:
    """Restores whole clips (t, c, h, w) with any video network, in the model's colour order.

    Args:
        net (nn.Module): The network (eval mode is set), on ``device``.
        scale (int): Upscaling factor (tiling).
        model_color (str): ``'rgb'`` or ``'bgr'``: the channel order the weights expect. Default: ``'rgb'``.
        chunk (int | None): Recurrent networks: kept frames per piece; ``None`` = whole clips.
        overlap (int): Recurrent networks: context frames on each side of a piece.
        tile (int | None), tile_overlap (int), amp (str | None): Sliding-window networks: see
            :class:`fmanet_plugin.utils.restorer.CentreFrameRestorer`.
    """

    def __init__(
        self,
        net: nn.Module,
        scale: int = 4,
        model_color: str = 'rgb',
        chunk: int | None = None,
        overlap: int = 0,
        tile: int | None = None,
        tile_overlap: int = 16,
        amp: str | None = None,
    ) -> None:
        self.net = net.eval()
        self.kind = model_kind(net)
        self.model_color = model_color
        self.chunk, self.overlap = chunk, overlap
        if self.kind == 'sliding':
            self.num_frame = window_length(net)
            # colour handled here for both kinds: the centre-frame restorer sees the model's own order
            self.forward = CentreFrameRestorer(net, scale, 'rgb', tile, tile_overlap, amp)
        else:
            if tile or amp:
                raise ValueError(f'tiling and autocast are for sliding-window networks, not {type(net).__name__}')
            self.num_frame = None
            self.forward = net

    def describe(self) -> str:
        """How clips are restored, in words (for reports)."""
        if self.kind == 'sliding':
            return f'sliding window of {self.num_frame} frames, edge-padded at clip ends'
        if self.chunk is None:
            return 'recurrent over each whole clip'
        return f'recurrent in chunks of {self.chunk} frames with {self.overlap} frames of overlap on each side'

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        """Restore a clip: ``lq`` (t, c, h, w) RGB in [0, 1] -> (t, c, s*h, s*w) RGB on the CPU."""
        swap = self.model_color == 'bgr'
        lq = lq.flip(1) if swap else lq
        out = restore_clip(self.forward, lq, self.kind, self.num_frame, self.chunk, self.overlap)
        return (out.flip(1) if swap else out).float().cpu()


def score_test_set(
    restorer: Callable[[torch.Tensor], torch.Tensor],
    test_set: TestSet,
    device: torch.device,
    crop_border: int = 4,
    image_dir: str | None = None,
) -> ClipEvaluator:
    """Restore every clip of a test set and score each frame (uint8 images, as written to PNG).

    Args:
        restorer (Callable): Clip (t, c, h, w) RGB in [0, 1] on ``device`` -> restored clip (t, c, s*h, s*w).
        test_set (TestSet): The frames.
        device (torch.device): Where the clips go.
        crop_border (int): Border of PSNR/SSIM. Default: 4.
        image_dir (str | None): Write the restored frames to ``<image_dir>/<clip>/<stem>.png``. Default: None.

    Returns:
        ClipEvaluator: Finished (:meth:`ClipEvaluator.summarise` is ready).
    """
    evaluator = ClipEvaluator(crop_border=crop_border)
    reader = test_set.reader
    for clip, stems in tqdm(test_set.clips.items(), desc=test_set.name, unit='clip', dynamic_ncols=True):
        frames = [reader.image('lq', clip, stem) for stem in stems]
        check_frame_sizes(frames, [f'{clip}/{stem}' for stem in stems], 'LR', f'test set {test_set.name}')
        lq = torch.stack(img2tensor(frames, bgr2rgb=True, float32=True)).to(device)
        output = restorer(lq)
        for idx, stem in enumerate(stems):
            out_img = tensor2img(output[idx], rgb2bgr=True)
            if image_dir is not None:
                atomic_imwrite(out_img, osp.join(image_dir, clip, f'{stem}.png'))
            gt_img = _to_uint8(reader.image('gt', clip, stem)) if test_set.has_gt else None
            evaluator.add(clip, idx, len(stems), stem, out_img, gt_img)
    evaluator.finish()
    return evaluator


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255.0).astype(np.uint8)  # exact: the reader divided 8-bit values by 255
