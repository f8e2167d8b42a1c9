"""VSRDB datasets, LMDB packing and the demo-data synthesiser, checked on tiny hand-built clips."""

from __future__ import annotations

import random
import re
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.data.vsrdb_dataset import VSRDBDataset, transform_frames
from fmanet_plugin.data.vsrdb_test_dataset import VSRDBTestDataset
from fmanet_plugin.utils import lmdb_io
from fmanet_plugin.utils.lmdb_io import AtomicLmdbWriter

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import flow_warp
from basicsr.utils import FileClient, imfrombytes
from basicsr.utils.registry import DATASET_REGISTRY
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]


create_lmdb = load_tool('create_lmdb')
demo_tool = load_tool('make_demo_data')
build_lmdb = lmdb_io.build_lmdb
SCALE = 4
LQ, GT, LQ_SHARP, FLOW = 'lq', 'gt', 'lq_sharp', 'flow'
FOLDERS = {LQ: 'blur/X4', GT: 'sharp', LQ_SHARP: 'sharp_bicubic/X4', FLOW: 'flow'}


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def write_meta(root: Path, clips: dict[str, int], name: str = 'meta.txt') -> Path:
    path = root / name
    path.write_text(''.join(f'{clip} {n} (0,0,3)\n' for clip, n in clips.items()))
    return path


def train_opt(root: Path, **extra) -> dict:
    opt = {f'dataroot_{s}': str(root / FOLDERS[s]) for s in (LQ, GT, LQ_SHARP)}
    opt.update(meta_info_file=str(root / 'meta.txt'), scale=SCALE, io_backend={'type': 'disk'})
    opt.update(extra)
    return opt


def as_lmdb(opt: dict) -> dict:
    lmdb_opt = {k: (v + '.lmdb' if k.startswith('dataroot_') else v) for k, v in opt.items()}
    lmdb_opt['io_backend'] = {'type': 'lmdb'}
    return lmdb_opt


def build_all_lmdbs(root: Path) -> None:
    for stream, folder in FOLDERS.items():
        if (root / folder).is_dir():
            build_lmdb(root / folder, root / f'{folder}.lmdb', kind='flow' if stream == FLOW else 'image')


# ----- coordinate-coded clips: R = 10 x, G = 10 y of the LR pixel, B = 100 clip + 10 frame + stream tag -----


def make_coord_dataset(root: Path, clips: dict[str, int], lr_hw: tuple[int, int] = (10, 12)) -> Path:
    h, w = lr_hw
    ys, xs = np.mgrid[0:h, 0:w]
    hr_ys, hr_xs = np.mgrid[0 : h * SCALE, 0 : w * SCALE] // SCALE  # HR pixel -> its LR pixel
    for clip_id, (clip, num) in enumerate(clips.items()):
        for k in range(num):
            code = 100 * clip_id + 10 * k
            for stream, (gx, gy, tag) in {LQ: (xs, ys, 1), LQ_SHARP: (xs, ys, 2), GT: (hr_xs, hr_ys, 3)}.items():
                img = np.stack([10 * gx, 10 * gy, np.full_like(gx, code + tag)], -1).astype(np.uint8)
                write_rgb(root / FOLDERS[stream] / clip / f'{k:08d}.png', img)
    return root


@pytest.fixture()
def coord_root(tmp_path):
    root = make_coord_dataset(tmp_path, {'000': 7, '001': 5, '002': 4})
    write_meta(root, {'000': 7, '001': 5, '002': 4})
    return root


def codes(frames: torch.Tensor) -> torch.Tensor:
    """(t, 3, h, w) float frames -> the uint8 codes (t, 3, h, w)."""
    return (frames * 255).round().long()


def test_train_sample_shapes_types_and_key(coord_root):
    ds = VSRDBDataset(train_opt(coord_root, num_frame=5, gt_size=24, exclude_clips=['002']))
    assert len(ds) == 7 + 5
    random.seed(0)
    sample = ds[0]
    assert sample['lq'].shape == (5, 3, 6, 6) and sample['lq_sharp'].shape == (5, 3, 6, 6)
    assert sample['gt'].shape == (5, 3, 24, 24) and 'flow' not in sample
    assert all(sample[k].dtype == torch.float32 for k in (LQ, GT, LQ_SHARP))
    clip, frame = sample['key'].split('/')
    centre_code = codes(sample['lq'])[2, 2, 0, 0].item()
    assert centre_code == 100 * ['000', '001'].index(clip) + 10 * int(frame) + 1
    assert all(ds[i]['key'].split('/')[0] != '002' for i in range(len(ds)))


def test_crop_aligns_lr_and_hr_under_every_augmentation(coord_root):
    ds = VSRDBDataset(
        train_opt(
            coord_root, num_frame=3, gt_size=24, use_hflip=True, use_vflip=True, use_rot=True, exclude_clips=['002']
        )
    )
    seen = set()
    for seed in range(16):
        random.seed(seed)
        sample = ds[seed % len(ds)]
        lq, lq_sharp, gt = codes(sample['lq']), codes(sample['lq_sharp']), codes(sample['gt'])
        # every HR pixel of the 4x4 block over LR pixel (i, j) was made from that LR pixel, in every frame
        upsampled = lq[:, :2].repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)
        assert torch.equal(gt[:, :2], upsampled)
        assert torch.equal(lq_sharp[:, :2], lq[:, :2])
        frame_code = lq[:, 2, :1, :1]
        assert (lq[:, 2] == frame_code).all() and (lq_sharp[:, 2] == frame_code + 1).all()
        assert (gt[:, 2] == frame_code + 2).all()
        assert torch.equal(frame_code.flatten().diff(), torch.tensor([10, 10]))  # consecutive, in order
        # the LR crop is a 6x6 window of the coordinate grid (R: x, G: y), possibly flipped / transposed
        red, green = lq[0, 0], lq[0, 1]
        transposed = bool((red[1:] != red[:1]).any())
        x_map, y_map = (red.T, green.T) if transposed else (red, green)
        assert (x_map.diff(dim=1).abs() == 10).all() and (x_map.diff(dim=0) == 0).all()
        assert (y_map.diff(dim=0).abs() == 10).all() and (y_map.diff(dim=1) == 0).all()
        seen.add((transposed, bool(x_map[0, 1] < x_map[0, 0]), bool(y_map[1, 0] < y_map[0, 0])))
    assert len(seen) >= 6  # the augmentations really happen (8 combinations possible)


# ----- smooth analytic clip with exactly known flows: frame k at LR point q shows texture(A_k q + b_k) -----

FLOW_LR_HW = (20, 24)


def texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            0.5 + 0.35 * np.sin(0.45 * x + 0.2 * y),
            0.5 + 0.35 * np.cos(0.3 * y - 0.25 * x),
            0.5 + 0.3 * np.sin(0.2 * x) * np.cos(0.35 * y),
        ],
        -1,
    )


def frame_motion(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal scale and offset of frame k's view of the texture (non-square, both axes differ)."""
    return np.array([1 + 0.04 * (k - 2), 1 - 0.03 * (k - 2)]), np.array([1.3 * k, -0.9 * k])


def true_flow(c: int, n: int, hw: tuple[int, int]) -> np.ndarray:
    """Flow (h, w, 2) with frame_c(q) = frame_n(q + flow(q))."""
    (a_c, b_c), (a_n, b_n) = frame_motion(c), frame_motion(n)
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    q = np.stack([xs, ys], -1)
    return ((a_c * q + b_c - b_n) / a_n - q).astype(np.float32)


def render(k: int, hw: tuple[int, int], scale: int = 1) -> np.ndarray:
    ys, xs = np.mgrid[0 : hw[0] * scale, 0 : hw[1] * scale].astype(np.float64)
    lr_x, lr_y = (xs - (scale - 1) / 2) / scale, (ys - (scale - 1) / 2) / scale  # HR pixel -> LR coordinate
    a, b = frame_motion(k)
    return np.round(texture(a[0] * lr_x + b[0], a[1] * lr_y + b[1]) * 255).astype(np.uint8)


@pytest.fixture()
def flow_root(tmp_path):
    for k in range(5):
        for stream in (LQ, LQ_SHARP):
            write_rgb(tmp_path / FOLDERS[stream] / 'c' / f'{k:08d}.png', render(k, FLOW_LR_HW))
        write_rgb(tmp_path / FOLDERS[GT] / 'c' / f'{k:08d}.png', render(k, FLOW_LR_HW, SCALE))
        for n in range(max(0, k - 2), min(5, k + 3)):
            if n != k:
                (tmp_path / 'flow' / 'c').mkdir(parents=True, exist_ok=True)
                np.save(tmp_path / 'flow' / 'c' / f'{k:08d}_{n:08d}.npy', true_flow(k, n, FLOW_LR_HW))
    write_meta(tmp_path, {'c': 5})
    return tmp_path


def warp_error(centre: torch.Tensor, neighbour: torch.Tensor, flow: torch.Tensor) -> float:
    """Mean |flow_warp(neighbour, flow) - centre| where the sampling point is inside the frame.

    Args:
        centre (Tensor): (c, h, w). neighbour (Tensor): (c, h, w). flow (Tensor): (2, h, w).
    """
    h, w = centre.shape[-2:]
    warped = flow_warp(neighbour[None], flow.permute(1, 2, 0)[None])[0]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    x, y = xs + flow[0], ys + flow[1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    assert inside.float().mean() > 0.5
    return (warped - centre).abs().mean(0)[inside].mean().item()


def test_fixture_flows_map_the_frames(flow_root):
    """Sanity of the fixture itself: the analytic flow maps each neighbour onto the centre; zero flow does not."""
    centre = torch.from_numpy(render(2, FLOW_LR_HW)).permute(2, 0, 1) / 255
    for n in (0, 1, 3, 4):
        neighbour = torch.from_numpy(render(n, FLOW_LR_HW)).permute(2, 0, 1) / 255
        flow = torch.from_numpy(true_flow(2, n, FLOW_LR_HW)).permute(2, 0, 1)
        assert warp_error(centre, neighbour, flow) < 0.01
        assert warp_error(centre, neighbour, 0 * flow) > 0.05


@pytest.mark.parametrize('hflip', [False, True])
@pytest.mark.parametrize('vflip', [False, True])
@pytest.mark.parametrize('transpose', [False, True])
def test_transform_frames_keeps_flow_consistent(hflip, vflip, transpose):
    lrs = [render(2, FLOW_LR_HW), render(4, FLOW_LR_HW)]
    hrs = [render(2, FLOW_LR_HW, SCALE)]
    flow = true_flow(2, 4, FLOW_LR_HW)
    (centre, neighbour), (hr,), (new_flow,) = transform_frames(lrs, hrs, [flow], hflip, vflip, transpose)
    expected = lrs[0][:, ::-1] if hflip else lrs[0]
    expected = expected[::-1] if vflip else expected
    expected = expected.transpose(1, 0, 2) if transpose else expected
    assert np.array_equal(centre, expected)
    assert new_flow.shape == centre.shape[:2] + (2,) and hr.shape[:2] == (centre.shape[0] * 4, centre.shape[1] * 4)
    to_t = lambda a: torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)  # noqa: E731
    c, nb, f = to_t(centre) / 255, to_t(neighbour) / 255, to_t(new_flow)
    assert warp_error(c, nb, f) < 0.01
    assert warp_error(c, nb, f * torch.tensor([-1.0, 1.0]).view(2, 1, 1)) > 0.03  # wrong x sign is caught
    assert warp_error(c, nb, f * torch.tensor([1.0, -1.0]).view(2, 1, 1)) > 0.03  # wrong y sign is caught
    assert warp_error(c, nb, f.flip(0)) > 0.03  # swapped components are caught


@pytest.mark.parametrize('gt_size', [None, 64])
def test_dataset_flow_maps_augmented_frames(flow_root, gt_size):
    opt = train_opt(flow_root, num_frame=5, gt_size=gt_size, use_hflip=True, use_vflip=True, use_rot=True)
    ds = VSRDBDataset(dict(opt, dataroot_flow=str(flow_root / 'flow')))
    for seed in range(6):
        random.seed(seed)
        sample = ds[0]
        assert sample['key'] == 'c/00000002'  # 5 frames, T=5: the only possible centre
        flow, frames = sample['flow'], sample['lq_sharp']
        assert flow.shape == (5, 2, *frames.shape[-2:]) and torch.equal(flow[2], torch.zeros_like(flow[2]))
        for t in (0, 1, 3, 4):
            assert warp_error(frames[2], frames[t], flow[t]) < 0.012
        # HR stream follows the same geometry: area-downsampled HR matches LR (MATLAB-centred coordinates)
        down = F.avg_pool2d(sample['gt'], SCALE)
        assert (down - sample['lq']).abs().mean() < 0.03


def test_disk_and_lmdb_give_identical_samples(flow_root):
    build_all_lmdbs(flow_root)
    opt = train_opt(flow_root, num_frame=3, gt_size=32, use_hflip=True, use_vflip=True, use_rot=True)
    opt['dataroot_flow'] = str(flow_root / 'flow')
    disk, lmdb = VSRDBDataset(opt), DATASET_REGISTRY.get('VSRDBDataset')(as_lmdb(opt))
    for seed in range(4):
        random.seed(seed)
        a = disk[seed]
        random.seed(seed)
        b = lmdb[seed]
        assert a['key'] == b['key']
        assert all(torch.equal(a[k], b[k]) for k in (LQ, GT, LQ_SHARP, FLOW))
    test_opt = {'dataroot_lq': opt['dataroot_lq'], 'dataroot_gt': opt['dataroot_gt'], 'num_frame': 3}
    disk_test = VSRDBTestDataset({**test_opt, 'io_backend': {'type': 'disk'}})  # clips listed from the folders
    lmdb_test = VSRDBTestDataset(as_lmdb({**test_opt, 'io_backend': None}))  # ... from the LMDB meta info
    assert len(disk_test) == len(lmdb_test) == 5
    for i in range(5):
        a, b = disk_test[i], lmdb_test[i]
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt']) and a['key'] == b['key']


# ----- test dataset -----


def test_test_dataset_yields_every_frame_with_edge_padding(coord_root):
    ds = VSRDBTestDataset(
        {'dataroot_lq': str(coord_root / FOLDERS[LQ]), 'dataroot_gt': str(coord_root / FOLDERS[GT]), 'num_frame': 5}
    )
    assert len(ds) == 7 + 5 + 4  # clips listed from the folders, no frame dropped
    ds = VSRDBTestDataset(
        {
            'dataroot_lq': str(coord_root / FOLDERS[LQ]),
            'dataroot_gt': str(coord_root / FOLDERS[GT]),
            'clips': ['001'],
            'num_frame': 5,
        }
    )
    windows = []
    for i in range(len(ds)):
        sample = ds[i]
        assert (sample['clip'], sample['frame'], sample['frame_idx'], sample['num_frames']) == (
            '001',
            f'{i:08d}',
            i,
            5,
        )
        assert sample['lq'].shape == (5, 3, 10, 12) and sample['gt'].shape == (3, 40, 48)
        windows.append(((codes(sample['lq'])[:, 2, 0, 0] - 101) // 10).tolist())
        assert codes(sample['gt'][None])[0, 2, 0, 0].item() == 103 + 10 * i
    assert windows == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4], [2, 3, 4, 4, 4]]
    ds = VSRDBTestDataset(
        {'dataroot_lq': str(coord_root / FOLDERS[LQ]), 'meta_info_file': str(coord_root / 'meta.txt')}
    )
    assert 'gt' not in ds[0] and len(ds) == 16


# ----- errors -----


def test_even_num_frame_is_rejected(coord_root):
    with pytest.raises(ValueError, match="'num_frame'.*got 4"):
        VSRDBDataset(train_opt(coord_root, num_frame=4))
    with pytest.raises(ValueError, match="'num_frame'"):
        VSRDBTestDataset({'dataroot_lq': str(coord_root / FOLDERS[LQ]), 'num_frame': 2})
    with pytest.raises(ValueError, match="'dataroot_lq_sharp'"):
        VSRDBDataset({k: v for k, v in train_opt(coord_root).items() if k != 'dataroot_lq_sharp'})


@pytest.fixture()
def three_frame_root(tmp_path):
    make_coord_dataset(tmp_path, {'c': 3})
    write_meta(tmp_path, {'c': 3})
    for k, n in [(1, 0), (1, 2)]:
        (tmp_path / 'flow' / 'c').mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / 'flow' / 'c' / f'{k:08d}_{n:08d}.npy', np.zeros((10, 12, 2), np.float32))
    return tmp_path


def test_missing_frame_and_flow_files_are_named(three_frame_root):
    root = three_frame_root
    opt = train_opt(root, dataroot_flow=str(root / 'flow'))
    (root / 'flow' / 'c' / '00000001_00000002.npy').unlink()
    # found when the dataset is built, not when a window first needs the file
    with pytest.raises(
        FileNotFoundError, match=r"dataroot_flow '.*flow': 1 file\(s\) missing \(c/00000001_00000002.npy\)"
    ):
        VSRDBDataset(opt)
    missing = root / FOLDERS[LQ] / 'c' / '00000002.png'
    missing.unlink()
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"dataroot_lq '{root / FOLDERS[LQ]}': 1 file(s) missing (c/00000002.png)")
    ):
        VSRDBDataset({**opt, 'dataroot_flow': None})


def test_missing_lmdb_key_is_named(three_frame_root):
    root = three_frame_root
    (root / FOLDERS[LQ_SHARP] / 'c' / '00000000.png').unlink()
    build_all_lmdbs(root)
    with pytest.raises(FileNotFoundError, match=r'sharp_bicubic/X4\.lmdb\': 1 file\(s\) missing \(c/00000000\)'):
        VSRDBDataset(as_lmdb(train_opt(root)))
    with pytest.raises(FileNotFoundError, match="dataroot_gt '.*nowhere.lmdb': not an LMDB"):
        VSRDBDataset(as_lmdb(train_opt(root, dataroot_gt=str(root / 'nowhere'))))


def test_wrong_hr_size_and_flow_shape_are_reported(three_frame_root):
    root = three_frame_root
    np.save(root / 'flow' / 'c' / '00000001_00000000.npy', np.zeros((12, 10, 2), np.float32))
    with pytest.raises(ValueError, match=r'00000001_00000000.npy.*\(12, 10, 2\).*\(10, 12, 2\)'):
        VSRDBDataset(train_opt(root, dataroot_flow=str(root / 'flow')))[0]
    write_rgb(root / FOLDERS[GT] / 'c' / '00000001.png', np.zeros((40, 44, 3), np.uint8))
    with pytest.raises(ValueError, match=r'c/00000001.*\(40, 44\).*4 x the LR size \(10, 12\)'):
        VSRDBDataset(train_opt(root))[0]
    with pytest.raises(ValueError, match=r'c/00000001.*\(40, 44\)'):
        VSRDBTestDataset({'dataroot_lq': str(root / FOLDERS[LQ]), 'dataroot_gt': str(root / FOLDERS[GT])})[1]


# ----- LMDB packing -----


def test_create_lmdb_layout_is_readable_by_basicsr(flow_root):
    build_all_lmdbs(flow_root)
    lines = (flow_root / 'sharp.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert lines[0] == 'c/00000000.png (80,96,3) 1' and len(lines) == 5
    flow_lines = (flow_root / 'flow.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert flow_lines[0] == 'c/00000000_00000001.npy (20,24,2) float32' and len(flow_lines) == 14
    client = FileClient(
        'lmdb', db_paths=[str(flow_root / 'sharp.lmdb'), str(flow_root / 'flow.lmdb')], client_keys=['gt', 'flow']
    )
    img = imfrombytes(client.get('c/00000003', 'gt'))
    assert np.array_equal(img, cv2.imread(str(flow_root / 'sharp' / 'c' / '00000003.png')))
    raw = np.frombuffer(client.get('c/00000003_00000001', 'flow'), np.float32).reshape(20, 24, 2)
    assert np.array_equal(raw, np.load(flow_root / 'flow' / 'c' / '00000003_00000001.npy'))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if 'lmdb' in p.name]


def test_create_lmdb_is_atomic(coord_root, monkeypatch):
    src = coord_root / FOLDERS[LQ]
    (src / '001' / '00000002.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match='001/00000002.png'):
        build_lmdb(src, coord_root / 'blur' / 'bad.lmdb')
    assert _leftovers(coord_root / 'blur') == []

    calls = []

    def interrupted(path, level):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return b'x', (1, 1, 3)

    monkeypatch.setattr(lmdb_io, 'encode_image', interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_lmdb(coord_root / FOLDERS[GT], coord_root / 'gt.lmdb')
    assert _leftovers(coord_root) == []

    # a killed process never reaches finish(): only a hidden partial folder exists, no '*.lmdb'
    writer = AtomicLmdbWriter(coord_root / 'killed.lmdb', map_size=1 << 20)
    writer.put('a/0', b'bytes', 'png', (1, 1, 3), '1')
    writer.txn.commit()
    assert not (coord_root / 'killed.lmdb').exists()
    assert all(name.startswith('.killed.lmdb.') and name.endswith('.partial') for name in _leftovers(coord_root))
    writer.env.close()


def test_create_lmdb_refuses_to_clobber(coord_root):
    src, out = coord_root / FOLDERS[LQ], coord_root / 'x.lmdb'
    build_lmdb(src, out)
    with pytest.raises(FileExistsError, match='x.lmdb'):
        build_lmdb(src, out)
    build_lmdb(coord_root / FOLDERS[GT], out, overwrite=True)
    assert '(40,48,3)' in (out / 'meta_info.txt').read_text()
    assert _leftovers(coord_root) == ['x.lmdb']


# ----- demo data -----


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)


def test_make_demo_data_layout_and_exact_flow(tmp_path):
    out = tmp_path / 'demo'
    args = ['--num-clips', '4', '--val-clips', '1', '--height', '128', '--width', '160']
    demo_tool.make_demo_data(demo_tool.parse_args(['--out', str(out), *args]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['demo']  # built atomically, nothing else left
    assert (out / 'meta_info_train.txt').read_text() == ''.join(f'{c} 8 (128,160,3)\n' for c in ('000', '001', '002'))
    assert (out / 'meta_info_val.txt').read_text() == '003 8 (128,160,3)\n'
    sources = [line.split() for line in (out / 'sources.txt').read_text().splitlines()]
    assert [clip for clip, _, _ in sources] == ['000', '001', '002', '003']
    assert [split for _, _, split in sources] == ['train'] * 3 + ['val']
    assert sources[3][1] not in {photo for _, photo, _ in sources[:3]}  # validation footage never trained on
    for folder, hw in [
        ('train_blur_bicubic/X4', (32, 40)),
        ('train_sharp_bicubic/X4', (32, 40)),
        ('train_sharp', (128, 160)),
    ]:
        frames = sorted((out / folder).glob('*/*.png'))
        assert len(frames) == 32 and frames[0].relative_to(out / folder).as_posix() == '000/00000000.png'
        assert cv2.imread(str(frames[0])).shape == (*hw, 3)
    flows = sorted((out / 'train_flow').glob('*/*.npy'))
    assert len(flows) == 4 * (2 * 7 + 2 * 6)  # radius 2 inside 8-frame clips
    blur, sharp = (
        _read(out / 'train_blur_bicubic/X4/001/00000004.png'),
        _read(out / 'train_sharp_bicubic/X4/001/00000004.png'),
    )
    assert (blur - sharp).abs().mean() > 0.01  # motion blur present

    for clip, c, n in [('000', 3, 4), ('001', 4, 2), ('002', 0, 1), ('003', 7, 5)]:
        flow = np.load(out / 'train_flow' / clip / f'{c:08d}_{n:08d}.npy')
        assert flow.dtype == np.float32 and flow.shape == (32, 40, 2)
        flow = torch.from_numpy(flow).permute(2, 0, 1)
        lr = [_read(out / 'train_sharp_bicubic/X4' / clip / f'{k:08d}.png') for k in (c, n)]
        assert warp_error(lr[0], lr[1], flow) < 0.35 * warp_error(lr[0], lr[1], 0 * flow)
        # sub-pixel exactness on the well-sampled HR frames: the x4 flow beats one shifted by 1/4 LR pixel
        hr = [_read(out / 'train_sharp' / clip / f'{k:08d}.png') for k in (c, n)]
        hr_flow = F.interpolate(flow[None], scale_factor=4, mode='bilinear', align_corners=False)[0] * 4
        exact = warp_error(hr[0], hr[1], hr_flow)
        assert exact < 0.015
        for shift in ([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]):
            assert exact < 0.6 * warp_error(hr[0], hr[1], hr_flow + torch.tensor(shift).view(2, 1, 1))

    ds = VSRDBDataset(
        {
            'dataroot_lq': str(out / 'train_blur_bicubic/X4'),
            'dataroot_gt': str(out / 'train_sharp'),
            'dataroot_lq_sharp': str(out / 'train_sharp_bicubic/X4'),
            'dataroot_flow': str(out / 'train_flow'),
            'meta_info_file': str(out / 'meta_info_train.txt'),
            'num_frame': 5,
            'gt_size': 64,
            'io_backend': {'type': 'disk'},
        }
    )
    sample = ds[0]
    assert len(ds) == 24 and sample['flow'].shape == (5, 2, 16, 16) and sample['gt'].shape == (5, 3, 64, 64)


def test_make_demo_data_is_deterministic(tmp_path):
    args = ['--num-clips', '2', '--val-clips', '1', '--num-frames', '3', '--height', '64', '--width', '64']
    first = demo_tool.make_demo_data(demo_tool.parse_args([*args, '--out', str(tmp_path / 'a')]))
    second = demo_tool.make_demo_data(demo_tool.parse_args([*args, '--out', str(tmp_path / 'b')]))
    files = sorted(p.relative_to(first) for p in first.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob('*') if p.is_file()) and len(files) == 3 + 2 * (
        9 + 6
    )
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    stamp = (first / 'meta_info_train.txt').stat().st_mtime_ns
    demo_tool.make_demo_data(demo_tool.parse_args([*args, '--out', str(first)]))  # exists: left alone
    assert (first / 'meta_info_train.txt').stat().st_mtime_ns == stamp
