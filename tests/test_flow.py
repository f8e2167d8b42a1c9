"""RAFT pseudo-ground-truth flow: princeton-vl weight mapping, accuracy on known motion, the generator tool."""

from __future__ import annotations

from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.utils.lmdb_io import read_lmdb_meta_info
from fmanet_plugin.utils.raft_flow import compute_flow, load_raft, princeton_to_torchvision

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils import FileClient
from conftest import load_tool
from skimage import data as skdata
from torchvision.models.optical_flow import raft_large, raft_small

ROOT = Path(__file__).resolve().parents[1]
RAFT_SMALL = ROOT / 'tests' / 'data' / 'raft-small.pth'  # original princeton-vl release, see LICENSE_RAFT.txt


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """RAFT on 2 shared cores is far faster single-threaded (no OpenMP contention with other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def raft():
    return load_raft(RAFT_SMALL)


@pytest.fixture(scope='module')
def demo_clip(tmp_path_factory):
    """One synthetic 3-frame clip (LR 32x40) with exact ground-truth flow."""
    demo = load_tool('make_demo_data')
    out = tmp_path_factory.mktemp('demo') / 'demo'
    return demo.make_demo_data(
        demo.parse_args(f'--out {out} --num-clips 1 --val-clips 0 --num-frames 3 --height 128 --width 160'.split())
    )


def test_princeton_small_maps_onto_torchvision_in_order():
    original = torch.load(RAFT_SMALL, map_location='cpu', weights_only=True)
    converted = princeton_to_torchvision(original)
    expected = raft_small(weights=None).state_dict()
    assert len(original) == 106 and list(converted) == list(expected)  # same tensors, same order
    assert all(a is b for a, b in zip(converted.values(), original.values()))
    assert all(converted[k].shape == v.shape for k, v in expected.items())


def _original_large_keys() -> list[str]:
    """Parameter names of the original RAFT (large) model, written out from its module structure."""
    wb, bn = ['weight', 'bias'], ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    keys = []
    for encoder, norm in (('fnet', []), ('cnet', bn)):  # fnet: instance norm without parameters
        keys += [f'{encoder}.conv1.{p}' for p in wb] + [f'{encoder}.norm1.{p}' for p in norm]
        for layer in (1, 2, 3):
            for block in (0, 1):
                pre = f'{encoder}.layer{layer}.{block}'
                for i in (1, 2):
                    keys += [f'{pre}.conv{i}.{p}' for p in wb] + [f'{pre}.norm{i}.{p}' for p in norm]
                if layer > 1 and block == 0:  # strided block: norm3 is also registered as downsample.1
                    keys += [f'{pre}.norm3.{p}' for p in norm] + [f'{pre}.downsample.0.{p}' for p in wb]
                    keys += [f'{pre}.downsample.1.{p}' for p in norm]
        keys += [f'{encoder}.conv2.{p}' for p in wb]
    modules = ['encoder.convc1', 'encoder.convc2', 'encoder.convf1', 'encoder.convf2', 'encoder.conv']
    modules += [f'gru.conv{g}{i}' for i in (1, 2) for g in 'zrq'] + ['flow_head.conv1', 'flow_head.conv2']
    modules += ['mask.0', 'mask.2']
    return keys + [f'update_block.{m}.{p}' for m in modules for p in wb]


def test_princeton_large_names_map_onto_torchvision_raft_large():
    fake = {f'module.{k}': torch.zeros(()) for k in _original_large_keys()}
    assert set(princeton_to_torchvision(fake)) == set(raft_large(weights=None).state_dict())


def test_load_raft_accepts_both_formats_and_rejects_others(raft, tmp_path):
    torchvision_file = tmp_path / 'tv.pth'
    torch.save(raft.state_dict(), torchvision_file)
    reloaded = load_raft(torchvision_file)
    assert all(torch.equal(a, b) for a, b in zip(raft.state_dict().values(), reloaded.state_dict().values()))
    broken = {k: v for k, v in raft.state_dict().items() if not k.startswith('update_block.flow_head')}
    torch.save(broken, tmp_path / 'broken.pth')
    with pytest.raises(ValueError, match=r"broken.pth.*raft_small.*missing \['update_block.flow_head"):
        load_raft(tmp_path / 'broken.pth')
    with pytest.raises(ValueError, match='raft_large'):
        load_raft(RAFT_SMALL, model='large')
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_raft(tmp_path / 'nowhere.pth')


def _rgb_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]


class EchoRaft(torch.nn.Module):
    """Stands in for RAFT: its 'flow' is (red of image1, red of image2); records the input sizes."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.sizes = []

    def forward(self, image1, image2, num_flow_updates):
        self.sizes.append(tuple(image1.shape[-2:]))
        return [torch.cat([image1[:, :1], image2[:, :1]], 1)]


def test_compute_flow_input_range_padding_and_order():
    echo = EchoRaft()
    centre, neighbour = torch.rand(2, 3, 130, 133), torch.rand(2, 3, 130, 133)
    out = compute_flow(echo, centre, neighbour)
    assert echo.sizes == [(136, 136)]  # padded to multiples of 8
    assert torch.allclose(out, torch.cat([centre[:, :1], neighbour[:, :1]], 1) * 2 - 1)  # [-1, 1], cropped back
    # frames under 128 px are upscaled by k = 4 here; the 'flow' is averaged back and divided by k
    ramp = torch.linspace(0, 1, 48).expand(1, 3, 40, 48)
    out = compute_flow(echo, ramp, ramp)
    assert echo.sizes[-1] == (160, 192)
    assert torch.allclose(out[..., 2:-2, 2:-2], (ramp[:, :2] * 2 - 1)[..., 2:-2, 2:-2] / 4, atol=1e-5)


def test_raft_recovers_a_subpixel_translation(raft):
    img = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    shift = np.float32([[1, 0, 3.5], [0, 1, -2.25]])  # content moves right 3.5 px and up 2.25 px
    moved = cv2.warpAffine(img, shift, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    h, w = 250, 242  # not multiples of 8: exercises padding and cropping back
    flow = compute_flow(raft, _rgb_tensor(img[:h, :w]), _rgb_tensor(moved[:h, :w]))
    assert flow.shape == (1, 2, h, w)
    interior = flow[0, :, 32:-32, 32:-32]
    epe = (interior - torch.tensor([3.5, -2.25]).view(2, 1, 1)).norm(dim=0).mean()
    assert epe < 0.5


def test_generate_flow_layout_accuracy_and_resume(raft, demo_clip, tmp_path):
    tool = load_tool('generate_flow')
    frames = demo_clip / 'train_sharp_bicubic' / 'X4'
    out = tmp_path / 'flow'
    args = ['--input', str(frames), '--output', str(out), '--weights', str(RAFT_SMALL), '--batch-size', '3']
    args += ['--device', 'cpu']
    assert tool.main(args) == {'computed': 4, 'skipped': 0}
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file())
    assert files == [f'000/{c:08d}_{n:08d}.npy' for c, n in [(0, 1), (1, 0), (1, 2), (2, 1)]]
    for name in files:
        flow = np.load(out / name)
        assert flow.dtype == np.float32 and flow.shape == (32, 40, 2)
        truth = np.load(demo_clip / 'train_flow' / name)  # exact flow of the synthetic camera motion
        assert np.linalg.norm(flow - truth, axis=-1)[4:-4, 4:-4].mean() < 0.25

    stamps = {name: (out / name).stat().st_mtime_ns for name in files}
    assert tool.main(args) == {'computed': 0, 'skipped': 4}
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in files}
    (out / files[1]).unlink()
    assert tool.main(args) == {'computed': 1, 'skipped': 3}
    assert sorted(p.name for p in (out / '000').iterdir()) == [Path(f).name for f in files]  # no temp files left

    lmdb_out = tmp_path / 'flow.lmdb'
    assert tool.main([*args[:3], str(lmdb_out), *args[4:], '--radius', '1'])['computed'] == 4
    shapes = read_lmdb_meta_info(lmdb_out)
    assert shapes == {name.removesuffix('.npy'): (32, 40, 2) for name in files}
    client = FileClient('lmdb', db_paths=[str(lmdb_out)])
    for name in files:
        stored = np.frombuffer(client.get(name.removesuffix('.npy')), np.float32).reshape(32, 40, 2)
        assert np.allclose(stored, np.load(out / name), atol=1e-3)
    with pytest.raises(FileExistsError, match='flow.lmdb'):
        tool.main([*args[:3], str(lmdb_out), *args[4:]])
