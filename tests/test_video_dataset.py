"""VSRDB test datasets on clips stored as video files: the same windows as from the same frames as PNG folders."""

from __future__ import annotations

from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.data import vsrdb_reader
from fmanet_plugin.data.vsrdb_dataset import VSRDBDataset
from fmanet_plugin.data.vsrdb_test_dataset import VSRDBTestDataset

import av
import cv2
import numpy as np
import pytest
import torch

SCALE = 4
CLIP_LENGTHS = {'a': 5, 'b': 4}
LR_HW = (6, 10)


def known_frames(seed: int, count: int, hw: tuple[int, int]) -> list[np.ndarray]:
    """Random uint8 BGR frames (every code value possible, so that any colour conversion error shows)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(count)]


def encode_ffv1(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """Lossless FFV1 (RGB, bgr0) video of uint8 BGR frames."""
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('ffv1', rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], 'bgr0'
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format='bgr24').reformat(format='bgr0')
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture
def clip_roots(tmp_path):
    """The same clips as PNG folders (``png_lq``, ``png_gt``) and as FFV1 videos (``vid_lq``, ``vid_gt``)."""
    roots = {name: tmp_path / name for name in ('png_lq', 'png_gt', 'vid_lq', 'vid_gt')}
    for seed, (clip, count) in enumerate(CLIP_LENGTHS.items()):
        lqs = known_frames(2 * seed, count, LR_HW)
        gts = known_frames(2 * seed + 1, count, (LR_HW[0] * SCALE, LR_HW[1] * SCALE))
        for stream, frames in (('lq', lqs), ('gt', gts)):
            folder = roots[f'png_{stream}'] / clip
            folder.mkdir(parents=True)
            for i, image in enumerate(frames):
                assert cv2.imwrite(str(folder / f'{i:08d}.png'), image)
            roots[f'vid_{stream}'].mkdir(exist_ok=True)
            encode_ffv1(roots[f'vid_{stream}'] / f'{clip}.mkv', frames)
    return roots


def dataset_opt(lq: Path, gt: Path | None, **extra) -> dict:
    opt = dict(dataroot_lq=str(lq), dataroot_gt=None if gt is None else str(gt), num_frame=3, scale=SCALE)
    return {**opt, 'io_backend': {'type': 'disk'}, **extra}


@pytest.mark.parametrize('gt_kind', ['vid', 'png', None])
def test_video_root_gives_the_windows_of_the_png_frames(clip_roots, gt_kind, monkeypatch):
    decoded = []
    frame_source = vsrdb_reader.FrameSource
    monkeypatch.setattr(vsrdb_reader, 'FrameSource', lambda path: decoded.append(path) or frame_source(path))
    gt = None if gt_kind is None else clip_roots[f'{gt_kind}_gt']
    from_png = VSRDBTestDataset(dataset_opt(clip_roots['png_lq'], None if gt_kind is None else clip_roots['png_gt']))
    from_video = VSRDBTestDataset(dataset_opt(clip_roots['vid_lq'], gt))
    assert from_video.clips == from_png.clips == {c: [f'{i:08d}' for i in range(n)] for c, n in CLIP_LENGTHS.items()}
    assert len(from_video) == len(from_png) == sum(CLIP_LENGTHS.values())
    for index in range(len(from_png)):
        expected, got = from_png[index], from_video[index]
        assert set(got) == set(expected)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), (index, key)
            else:
                assert got[key] == value, (index, key)
    # read in order, each clip of each video stream is decoded once
    assert len(decoded) == len(CLIP_LENGTHS) * (2 if gt_kind == 'vid' else 1)
    # independent truth for the edge padding: frame 0's window is (0, 0, 1) of clip 'a'
    first = known_frames(0, 2, LR_HW)
    expected_lq = [first[0], first[0], first[1]]
    rgb = from_video[0]['lq'].permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy()
    assert all(np.array_equal(rgb[i], expected_lq[i][..., ::-1]) for i in range(3))


def test_lr_gt_frame_count_mismatch_names_both_videos(clip_roots):
    short = clip_roots['vid_gt'] / 'b.mkv'
    encode_ffv1(short, known_frames(9, CLIP_LENGTHS['b'] - 1, (LR_HW[0] * SCALE, LR_HW[1] * SCALE)))
    with pytest.raises(ValueError, match=r"clip 'b'.*vid_lq/b\.mkv' has 4 frames.*vid_gt/b\.mkv' has 3"):
        VSRDBTestDataset(dataset_opt(clip_roots['vid_lq'], clip_roots['vid_gt']))


def test_empty_video_root_and_training_on_videos_are_refused(clip_roots, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no clips here')
    with pytest.raises(ValueError, match=r"'.*empty' holds no clip: neither sub-folders of \.png frames nor video"):
        VSRDBTestDataset(dataset_opt(empty, None))
    opt = dataset_opt(clip_roots['vid_lq'], clip_roots['png_gt'], dataroot_lq_sharp=str(clip_roots['vid_lq']))
    with pytest.raises(ValueError, match=r"VSRDBDataset: option 'dataroot_lq' = '.*vid_lq' is a folder of videos"):
        VSRDBDataset(opt)
