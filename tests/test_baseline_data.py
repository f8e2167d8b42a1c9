"""Dataset adapters for basicsr's video models: windows against hand-computed frame indices, splits, errors."""

from __future__ import annotations

import random
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.data.vsrdb_recurrent_dataset import VSRDBRecurrentDataset
from fmanet_plugin.data.vsrdb_sliding_dataset import VSRDBSlidingDataset
from fmanet_plugin.data.vsrdb_video_test_dataset import VSRDBVideoRecurrentTestDataset, VSRDBVideoTestDataset

import cv2
import numpy as np
import pytest
import torch

CLIPS = {'000': 7, '001': 4, '002': 5}  # clip -> frames; 002 is the validation clip


def frame_value(clip: str, idx: int) -> int:
    """Grey level of frame ``idx`` of ``clip``: 20 * idx + 5 * (clip + 1), so the pixel says clip and frame."""
    return 20 * idx + 5 * (int(clip) + 1)


def decode(frames: torch.Tensor) -> list[tuple[int, int]]:
    """(clip, frame index) of each constant frame of ``frames`` (t, c, h, w) or (c, h, w)."""
    frames = frames if frames.dim() == 4 else frames[None]
    values = [round(v) for v in (frames[:, 0, 0, 0] * 255).tolist()]
    assert all(torch.all(f == f[0, 0, 0]) for f in frames), 'frames are not constant'
    return [(v % 20 // 5 - 1, v // 20) for v in values]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('vsrdb')
    for clip, length in CLIPS.items():
        for idx in range(length):
            for folder, size in (('lq', 8), ('gt', 32)):
                path = root / folder / clip / f'{idx:08d}.png'
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), np.full((size, size, 3), frame_value(clip, idx), np.uint8))
    (root / 'meta_train.txt').write_text('000 7 (32,32,3)\n001 4 (32,32,3)\n')
    (root / 'meta_val.txt').write_text('002 5 (32,32,3)\n')
    return root


def train_opt(root: Path, num_frame: int, **extra) -> dict:
    opt = dict(
        dataroot_lq=str(root / 'lq'), dataroot_gt=str(root / 'gt'), meta_info_file=str(root / 'meta_train.txt'),
        io_backend={'type': 'disk'}, num_frame=num_frame, gt_size=16, scale=4, use_hflip=True, use_rot=True,
        interval_list=[1], random_reverse=False, phase='train',
    )  # fmt: skip
    opt.update(extra)
    return opt


def test_sliding_windows(data_root):
    random.seed(0)
    dataset = VSRDBSlidingDataset(train_opt(data_root, 3))
    assert len(dataset) == 7 + 4  # every frame of the train meta file, nothing of 002
    # Item 2 is clip 000 frame 2: window 1, 2, 3, GT frame 2 (LR 4 x 4 and HR 16 x 16 crops).
    sample = dataset[2]
    assert sample['lq'].shape == (3, 3, 4, 4) and sample['gt'].shape == (3, 16, 16)
    assert decode(sample['lq']) == [(0, 1), (0, 2), (0, 3)] and decode(sample['gt']) == [(0, 2)]
    assert sample['key'] == '000/00000002'
    # Item 7 is clip 001 frame 0: no frame before it, so the centre is redrawn among 1 .. 2 (length 4).
    centres = set()
    for _ in range(30):
        sample = dataset[7]
        ((_, centre),) = decode(sample['gt'])
        assert decode(sample['lq']) == [(1, centre - 1), (1, centre), (1, centre + 1)]
        assert sample['key'] == f'001/{centre:08d}'
        centres.add(centre)
    assert centres == {1, 2}


def test_sliding_interval_two(data_root):
    dataset = VSRDBSlidingDataset(train_opt(data_root, 3, interval_list=[2], exclude_clips=['001']))
    assert len(dataset) == 7
    assert decode(dataset[3]['lq']) == [(0, 1), (0, 3), (0, 5)]
    for _ in range(20):  # frame 6 is redrawn to a centre 2 .. 4 whose window 2 frames apart fits
        ((_, centre),) = decode(dataset[6]['gt'])
        assert 2 <= centre <= 4


def test_recurrent_sequences(data_root):
    random.seed(0)
    dataset = VSRDBRecurrentDataset(train_opt(data_root, 3))
    sample = dataset[4]  # clip 000 frame 4: the last start that fits (7 - 3)
    assert sample['lq'].shape == (3, 3, 4, 4) and sample['gt'].shape == (3, 3, 16, 16)
    assert decode(sample['lq']) == decode(sample['gt']) == [(0, 4), (0, 5), (0, 6)]
    starts = set()
    for _ in range(30):
        frames = decode(dataset[5]['lq'])  # clip 000 frame 5: start redrawn among 0 .. 4
        start = frames[0][1]
        assert frames == [(0, start), (0, start + 1), (0, start + 2)]
        starts.add(start)
    assert starts == {0, 1, 2, 3, 4}
    assert decode(dataset[7 + 3]['lq']) in ([(1, 0), (1, 1), (1, 2)], [(1, 1), (1, 2), (1, 3)])


def test_training_adapters_reject_bad_options(data_root):
    with pytest.raises(ValueError, match='clip 001 .* has 4 frames; expected 5'):
        VSRDBRecurrentDataset(train_opt(data_root, 5))
    with pytest.raises(ValueError, match='dataroot_flow'):
        VSRDBSlidingDataset(train_opt(data_root, 3, dataroot_flow=str(data_root)))
    with pytest.raises(ValueError, match="'num_frame' must be an odd"):
        VSRDBSlidingDataset(train_opt(data_root, 4))
    with pytest.raises(FileNotFoundError, match='meta_info_file'):
        VSRDBSlidingDataset(train_opt(data_root, 3, meta_info_file=str(data_root / 'missing.txt')))


def test_video_test_datasets(data_root):
    opt = dict(
        name='any_name', dataroot_lq=str(data_root / 'lq'), dataroot_gt=str(data_root / 'gt'),
        meta_info_file=str(data_root / 'meta_val.txt'), io_backend={'type': 'disk'}, num_frame=3, cache_data=False,
    )  # fmt: skip
    sliding = VSRDBVideoTestDataset(dict(opt))
    assert len(sliding) == 5 and sliding.data_info['border'] == [1, 0, 0, 0, 1]
    first, last = sliding[0], sliding[4]
    assert decode(first['lq']) == [(2, 0), (2, 0), (2, 1)] and decode(first['gt']) == [(2, 0)]
    assert decode(last['lq']) == [(2, 3), (2, 4), (2, 4)] and last['idx'] == '4/5' and last['folder'] == '002'
    for cache in (False, True):
        recurrent = VSRDBVideoRecurrentTestDataset(dict(opt, cache_data=cache))
        assert len(recurrent) == 1 and recurrent.folders == ['002']
        clip = recurrent[0]
        assert clip['lq'].shape == (5, 3, 8, 8) and clip['gt'].shape == (5, 3, 32, 32)
        assert decode(clip['lq']) == decode(clip['gt']) == [(2, i) for i in range(5)]
    everything = VSRDBVideoRecurrentTestDataset(dict(opt, meta_info_file=None, clips=['001', '000']))
    assert everything.folders == ['000', '001'] and len(everything.data_info['folder']) == 4 + 7
    with pytest.raises(ValueError, match="'clips' names clips not in the dataset"):
        VSRDBVideoTestDataset(dict(opt, clips=['009']))
