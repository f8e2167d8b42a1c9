"""Evaluation, inference, benchmark and visualisation tools: tOF properties and end-to-end runs on tiny data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.data.vsrdb_windows import iter_windows
from fmanet_plugin.metrics.clip_eval import ClipEvaluator
from fmanet_plugin.metrics.tof_metric import calculate_tof, mean_per_clip, tof_crop, tof_per_pair
from fmanet_plugin.utils.checkpoint import read_state_dict
from fmanet_plugin.utils.official_ckpt import flip_image_channels
from fmanet_plugin.utils.tiling import tiled_forward

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data.data_util import generate_frame_indices
from basicsr.utils.registry import METRIC_REGISTRY
from conftest import TINY_NET, load_tool

TOOLS = Path(__file__).resolve().parents[1] / 'tools'
TEXTURE = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 255, (160, 200, 3)).astype(np.float32), (0, 0), 2.0)
TEXTURE = cv2.normalize(TEXTURE, None, 0, 255, cv2.NORM_MINMAX)


def moving_texture(velocity: tuple[float, float], num: int = 4, size=(96, 128), origin=(30, 30)) -> list[np.ndarray]:
    """Frames of a smooth texture seen through a window moving by ``velocity`` (x, y) pixels per frame."""
    h, w = size
    frames = []
    for i in range(num):
        y, x = origin[0] + round(i * velocity[1]), origin[1] + round(i * velocity[0])
        frames.append(TEXTURE[y : y + h, x : x + w].astype(np.uint8))
    return frames


# ----------------------------------------------------------------------------------------------- tOF


def test_tof_identical_sequences_is_zero():
    frames = moving_texture((2, 1))
    assert calculate_tof(frames, [f.copy() for f in frames]) == 0.0


def test_tof_measures_the_difference_of_motions():
    # GT static, output moving by v px/frame: Farneback recovers |v| in the interior, so tOF ~ |v|.
    static = moving_texture((0, 0))
    for velocity in ((1, 0), (0, 3), (2, 2)):
        values = tof_per_pair(moving_texture(velocity), static)
        assert len(values) == 3
        np.testing.assert_allclose(values, math.hypot(*velocity), rtol=0.05)
    # both moving: only the difference of the motions counts
    assert calculate_tof(moving_texture((3, 1)), moving_texture((1, 1))) == pytest.approx(2.0, rel=0.05)
    # a constant spatial offset of the whole output does not change its motion
    assert calculate_tof(moving_texture((2, 0), origin=(40, 30)), moving_texture((2, 0))) < 0.05


def test_tof_symmetric_and_input_conventions():
    a, b = moving_texture((2, 1)), moving_texture((0, 1))
    assert calculate_tof(a, b) == calculate_tof(b, a)
    # float [0, 255] frames, an array of frames and CHW order give the same value as uint8 HWC lists
    reference = calculate_tof(a, b)
    assert calculate_tof([f.astype(np.float32) for f in a], np.stack(b)) == reference
    chw_a, chw_b = (np.stack([f.transpose(2, 0, 1) for f in seq]) for seq in (a, b))
    assert calculate_tof(chw_a, chw_b, input_order='CHW') == reference
    assert METRIC_REGISTRY.get('calculate_tof') is calculate_tof
    with pytest.raises(ValueError, match='same number of frames'):
        calculate_tof(a, b[:2])
    with pytest.raises(ValueError, match='at least 48'):
        calculate_tof([np.zeros((40, 64), np.uint8)] * 2, [np.zeros((40, 64), np.uint8)] * 2)


def test_tof_crop_matches_protocol_examples():
    # largest multiple of 32 removing at least 16 px in total, centred
    assert tof_crop(720) == (8, 704)
    assert tof_crop(1280) == (16, 1248)
    assert tof_crop(100) == (18, 64)
    assert tof_crop(48) == (8, 32)


def test_mean_per_clip_pools_frames():
    per_clip, overall = mean_per_clip({'a': [1.0, 3.0], 'b': [5.0], 'c': []})
    assert per_clip == {'a': 2.0, 'b': 5.0}
    assert overall == 3.0


def test_clip_evaluator_skips_ends_and_pools_frames():
    """Static clips restored with a constant offset ``d``: PSNR 20 log10(255 / d) (Y: the offset times 219/255),
    tOF 0; frames arrive in any order, ``skip`` frames are left out at each end, the average pools frames."""
    gt = np.random.default_rng(0).integers(10, 200, (64, 64, 3)).astype(np.uint8)
    offsets, lengths = {'a': 1, 'b': 4}, {'a': 4, 'b': 3}
    evaluator = ClipEvaluator(crop_border=4)
    order = [('b', 2), ('a', 3), ('a', 0), ('b', 0), ('a', 2), ('b', 1), ('a', 1)]
    for clip, idx in order:
        evaluator.add(clip, idx, lengths[clip], f'{idx:08d}', gt + np.uint8(offsets[clip]), gt)
    assert evaluator.finish() == []
    rows, average = evaluator.summarise(skip=1)
    psnr = {c: 20 * math.log10(255 / d) for c, d in offsets.items()}
    psnr_y = {c: 20 * math.log10(255 / (d * 219 / 255)) for c, d in offsets.items()}
    assert rows['a']['frames'] == 2 and rows['b']['frames'] == 1 and average['frames'] == 3
    for clip in offsets:
        assert rows[clip]['psnr_rgb'] == pytest.approx(psnr[clip], abs=1e-9)
        assert rows[clip]['psnr_y'] == pytest.approx(psnr_y[clip], abs=1e-4)  # float32 Y conversion
    assert average['psnr_rgb'] == pytest.approx((2 * psnr['a'] + psnr['b']) / 3, abs=1e-9)
    assert rows['a']['tof'] == pytest.approx(0, abs=1e-6) and math.isnan(rows['b']['tof'])  # b keeps one frame: no pair
    assert evaluator.summarise(skip=0)[0]['b']['frames'] == 3


# ------------------------------------------------------------------------------------- windows, tiling


# (frames in the clip, window length) -> the window of every centre frame, written out by hand
HAND_WINDOWS = {
    (1, 3): [[0, 0, 0]],
    (2, 1): [[0], [1]],
    (2, 3): [[0, 0, 1], [0, 1, 1]],
    (4, 3): [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]],
    (3, 5): [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 2]],
    (6, 5): [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 5], [3, 4, 5, 5, 5]],
}


@pytest.mark.parametrize(('num_frames', 'num_seq'), list(HAND_WINDOWS))
def test_windows_are_edge_padded(num_frames, num_seq):
    expected = HAND_WINDOWS[(num_frames, num_seq)]
    indices = [generate_frame_indices(c, num_frames, num_seq, padding='replicate') for c in range(num_frames)]
    assert indices == expected  # what the test dataset and the tools read
    assert list(iter_windows(iter(range(num_frames)), num_seq)) == expected  # streamed (video input)


def make_local(model: FMANet) -> FMANet:
    """Zero the attention outputs and the flow heads: the model becomes a finite-receptive-field CNN."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(('co_attn.proj_out', 'da_attn.proj_out')):
                module.weight.zero_()
            if name.endswith(('flow_update', 'image_flow_head', 'image_flow_refine', 'flow_refine')):
                module[-1].weight.zero_()
    return model


def receptive_radius(forward, size: int = 40) -> int:
    """LR receptive radius of one output pixel, measured as the extent of its non-zero input gradient."""
    lq = torch.rand(1, 3, 3, size, size, requires_grad=True)
    centre = size // 2
    forward(lq)[0, :, 4 * centre + 1, 4 * centre + 2].sum().backward()
    ys, xs = torch.nonzero(lq.grad.abs().sum(dim=(0, 1, 2)), as_tuple=True)
    return int(max(centre - ys.min(), ys.max() - centre, centre - xs.min(), xs.max() - centre))


def test_tiled_forward_exact_within_receptive_field():
    torch.manual_seed(0)
    model = make_local(FMANet(**TINY_NET)).eval()

    def forward(x):
        return model(x)['output']

    radius = receptive_radius(forward)
    assert 5 <= radius <= 20  # a stack of 3x3 convolutions, not global any more
    lq = torch.rand(1, 3, 3, 16, 40 + 5 * radius)  # tiles along the width only (height <= tile)
    with torch.no_grad():
        full = forward(lq)
        # a tile contributes only >= overlap/4 LR px from its inner edges: exact once overlap >= 4 * radius
        exact = tiled_forward(forward, lq, 4, tile=4 * radius + 16, overlap=4 * radius)
        rough = tiled_forward(forward, lq, 4, tile=4 * radius + 16, overlap=4)
    assert exact.shape == full.shape == (1, 3, 64, 4 * lq.shape[-1])
    torch.testing.assert_close(exact, full, rtol=0, atol=1e-5)
    assert (rough - full).abs().max() > 1e-4  # too small an overlap shows at the seams


def test_tiled_forward_close_for_the_full_model():
    # FMA-Net's transposed attention pools over the whole input, so tiles only approximate the full pass.
    torch.manual_seed(0)
    model = FMANet(**TINY_NET).eval()
    lq = torch.rand(1, 3, 3, 24, 40)
    with torch.no_grad():
        full = model(lq)['output']
        tiled = tiled_forward(lambda x: model(x)['output'], lq, 4, tile=16, overlap=8)
    diff = (tiled - full).abs()
    assert diff.mean() < 2e-3 and diff.max() < 0.05
    assert full.abs().mean() > 0.05  # the comparison is not trivially satisfied by a near-zero output


# ------------------------------------------------------------------------------ tools, end to end


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save({'params': FMANet(**TINY_NET).state_dict()}, path)
    return path


@pytest.fixture(scope='module')
def vsrdb_folder(tmp_path_factory) -> Path:
    """Two clips of 5 frames: sharp HR 64x64 crops of a moving texture and their 16x16 LR versions."""
    root = tmp_path_factory.mktemp('vsrdb')
    for clip, velocity in (('000', (2, 1)), ('001', (0, 2))):
        for i, hr in enumerate(moving_texture(velocity, num=5, size=(64, 64))):
            for stream, img in (('gt', hr), ('lq', cv2.resize(hr, (16, 16), interpolation=cv2.INTER_AREA))):
                (root / stream / clip).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / stream / clip / f'{i:08d}.png'), img)
    return root


def write_test_options(path: Path, data: Path, ckpt: Path, results: Path, model_color: str = 'rgb') -> Path:
    network = '\n'.join(f'  {k}: {v}' for k, v in TINY_NET.items())
    path.write_text(
        f"""name: tiny
scale: 4
num_gpu: 0
model_color: {model_color}
datasets:
  test_1:
    name: synth
    type: VSRDBTestDataset
    dataroot_lq: {data / 'lq'}
    dataroot_gt: {data / 'gt'}
    num_frame: 3
    io_backend:
      type: disk
network_g:
  type: FMANet
{network}
path:
  pretrain_network_g: {ckpt}
  results_root: {results}
val:
  save_img: true
"""
    )
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def psnr_border4(a: np.ndarray, b: np.ndarray) -> float:
    diff = a[4:-4, 4:-4].astype(np.float64) - b[4:-4, 4:-4].astype(np.float64)
    return 10 * math.log10(255.0**2 / np.mean(diff**2))


def test_test_tool_end_to_end(tmp_path, vsrdb_folder, tiny_ckpt):
    test_tool = load_tool('test')
    results = tmp_path / 'results'
    opt = write_test_options(tmp_path / 'opt.yml', vsrdb_folder, tiny_ckpt, results)
    assert test_tool.main(['-opt', str(opt)]) == 0

    frames = read_csv(results / 'synth_frames.csv')
    assert [(r['clip'], r['frame_idx']) for r in frames] == [(c, str(i)) for c in ('000', '001') for i in range(5)]
    clips = read_csv(results / 'synth_metrics.csv')
    rows = {(r['protocol'], r['clip']): r for r in clips}
    assert set(rows) == {(p, c) for p in ('released', 'all') for c in ('000', '001', 'average')}
    assert rows['released', '000']['frames'] == '3' and rows['all', '000']['frames'] == '5'
    assert rows['all', 'average']['frames'] == '10'
    markdown = (results / 'synth_metrics.md').read_text()
    assert 'Released protocol' in markdown and '| 000 | 3 |' in markdown and '| **Average** | 10 |' in markdown

    # independent recomputation from the written images
    outputs = {
        c: [cv2.imread(str(results / 'visualization/synth' / c / f'{i:08d}.png')) for i in range(5)]
        for c in ('000', '001')
    }
    gts = {c: [cv2.imread(str(vsrdb_folder / 'gt' / c / f'{i:08d}.png')) for i in range(5)] for c in ('000', '001')}
    for row in frames:
        out, gt = outputs[row['clip']][int(row['frame_idx'])], gts[row['clip']][int(row['frame_idx'])]
        assert out.shape == gt.shape == (64, 64, 3)
        assert float(row['psnr_rgb']) == pytest.approx(psnr_border4(out, gt), abs=1e-6)
    for clip in ('000', '001'):
        released = [r for r in frames if r['clip'] == clip and 1 <= int(r['frame_idx']) <= 3]
        assert float(rows['released', clip]['psnr_y']) == pytest.approx(np.mean([float(r['psnr_y']) for r in released]))
        assert float(rows['all', clip]['tof']) == pytest.approx(calculate_tof(outputs[clip], gts[clip]), rel=1e-6)
        assert float(rows['released', clip]['tof']) == pytest.approx(
            calculate_tof(outputs[clip][1:4], gts[clip][1:4]), rel=1e-6
        )
    all_psnr = [float(r['psnr_rgb']) for r in frames]
    assert float(rows['all', 'average']['psnr_rgb']) == pytest.approx(np.mean(all_psnr))

    # a BGR checkpoint (image-facing weights flipped) run with model_color: bgr gives the same numbers
    state, _ = read_state_dict(str(tiny_ckpt))
    bgr_ckpt = tmp_path / 'tiny_bgr.pth'
    torch.save({'params': flip_image_channels({k: v.clone() for k, v in state.items()})}, bgr_ckpt)
    results_bgr = tmp_path / 'results_bgr'
    opt_bgr = write_test_options(tmp_path / 'opt_bgr.yml', vsrdb_folder, bgr_ckpt, results_bgr, model_color='bgr')
    assert test_tool.main(['-opt', str(opt_bgr)]) == 0
    for row, row_bgr in zip(frames, read_csv(results_bgr / 'synth_frames.csv')):
        assert float(row_bgr['psnr_rgb']) == pytest.approx(float(row['psnr_rgb']), abs=1e-3)


def test_test_tool_rejects_mismatched_checkpoint(tmp_path, vsrdb_folder):
    bad = tmp_path / 'bad.pth'
    torch.save({'params': FMANet(**{**TINY_NET, 'dim': 9}).state_dict()}, bad)
    opt = write_test_options(tmp_path / 'opt.yml', vsrdb_folder, bad, tmp_path / 'results')
    with pytest.raises(ValueError, match=r'bad\.pth \[params\] does not match'):
        load_tool('test').main(['-opt', str(opt)])


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, frames[0].shape[1::-1])
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def read_video(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_inference_video_to_frames_and_video(tmp_path, tiny_ckpt):
    inference = load_tool('inference')
    frames = [cv2.resize(f, (24, 16), interpolation=cv2.INTER_AREA) for f in moving_texture((3, 1), num=5)]
    video = tmp_path / 'in.avi'
    write_video(video, frames)
    opt = tmp_path / 'net.yml'
    opt.write_text('network_g:\n  type: FMANet\n' + ''.join(f'  {k}: {v}\n' for k, v in TINY_NET.items()))
    common = ['--ckpt', str(tiny_ckpt), '-opt', str(opt), '--device', 'cpu']

    out_dir = tmp_path / 'frames'
    assert inference.main(['-i', str(video), '-o', str(out_dir), *common]) == 0
    written = sorted(out_dir.iterdir())
    assert [p.name for p in written] == [f'{i:08d}.png' for i in range(5)]
    assert all(cv2.imread(str(p)).shape == (64, 96, 3) for p in written)
    assert not list(out_dir.glob('.tmp_*'))

    out_video = tmp_path / 'out.avi'
    assert inference.main(['-i', str(video), '-o', str(out_video), *common, '--tile', '16', '--tile-overlap', '4']) == 0
    restored = read_video(out_video)
    assert len(restored) == 5 and restored[0].shape == (64, 96, 3)
    assert not list(tmp_path.glob('.tmp_*'))


def test_inference_frames_match_windowed_model(tmp_path, tiny_ckpt):
    # output frame i == model(window of i, edge-padded) on RGB input, independently of the tool's plumbing
    inference = load_tool('inference')
    frames = [cv2.resize(f, (12, 8), interpolation=cv2.INTER_AREA) for f in moving_texture((2, 0), num=4)]
    src = tmp_path / 'src'
    src.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(src / f'f{i}.png'), frame)
    opt = tmp_path / 'net.yml'
    opt.write_text('network_g:\n  type: FMANet\n' + ''.join(f'  {k}: {v}\n' for k, v in TINY_NET.items()))
    out_dir = tmp_path / 'out'
    inference.main(['-i', str(src), '-o', str(out_dir), '--ckpt', str(tiny_ckpt), '-opt', str(opt), '--device', 'cpu'])
    model = FMANet(**TINY_NET).eval()
    model.load_state_dict(torch.load(tiny_ckpt)['params'])
    rgb = torch.stack([torch.from_numpy(f[..., ::-1].copy()).permute(2, 0, 1).float() / 255 for f in frames])
    for i, window in enumerate(([0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3])):
        with torch.no_grad():
            expected = model(rgb[window][None])['output'][0].clamp(0, 1)
        expected = (expected.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)
        written = cv2.imread(str(out_dir / f'f{i}.png')).astype(np.int16)
        assert np.abs(written - expected).max() <= 1  # float round-off may flip a rounding


def test_inference_unreadable_input(tmp_path, tiny_ckpt):
    inference = load_tool('inference')
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'not a video')
    with pytest.raises(ValueError, match='cannot open .*broken.mp4 as a video'):
        inference.main(['-i', str(bad), '-o', str(tmp_path / 'o'), '--ckpt', str(tiny_ckpt), '--device', 'cpu'])
    with pytest.raises(FileNotFoundError, match='input not found'):
        inference.main(['-i', str(tmp_path / 'missing'), '-o', str(tmp_path / 'o'), '--ckpt', str(tiny_ckpt)])


# ------------------------------------------------------------------------------ benchmark, visualize


def test_benchmark_two_small_models(tmp_path, vsrdb_folder, tiny_ckpt):
    out = tmp_path / 'bench'
    argv = ['--models', 'FMANet,Bicubic', '--small', '--size', '16x16', '--frames', '3', '--warmup', '0']
    argv += ['--runs', '1', '--device', 'cpu', '--out-dir', str(out), '--ckpt', f'FMANet={tiny_ckpt}']
    argv += ['--lq-root', str(vsrdb_folder / 'lq'), '--gt-root', str(vsrdb_folder / 'gt')]
    assert load_tool('benchmark').main(argv) == 0  # each model in its own subprocess

    table = [line for line in (out / 'benchmark.md').read_text().splitlines() if line.startswith('|')]
    header = [c.strip() for c in table[0].strip('|').split('|')]
    assert header == ['Model', 'Variant', 'Params (M)', 'MACs / frame (G)', 'Latency / frame (ms)',
                      'Peak memory (MB)', 'PSNR (dB)', 'PSNR Y (dB)', 'SSIM', 'tOF']  # fmt: skip
    rows = {r[0]: r for r in ([c.strip() for c in line.strip('|').split('|')] for line in table[2:])}
    assert set(rows) == {'FMANet', 'Bicubic'}
    assert all(cell not in ('', '-') for row in rows.values() for cell in row)  # every column measured
    assert rows['FMANet'][1] == 'small, window 3'

    results = {r['model']: r for r in json.loads((out / 'benchmark.json').read_text())}
    tiny = FMANet(**TINY_NET)
    assert results['FMANet']['params_m'] * 1e6 == pytest.approx(sum(p.numel() for p in tiny.parameters()))
    assert results['FMANet']['gmacs_per_frame'] > 0 and results['Bicubic']['params_m'] == 0
    assert results['FMANet']['peak_mem_mb'] > 0
    # Bicubic quality, recomputed independently: frames 1..3 of each clip (--skip-ends 1)
    psnrs = []
    for clip in ('000', '001'):
        for i in range(1, 4):
            lq = cv2.imread(str(vsrdb_folder / 'lq' / clip / f'{i:08d}.png')).astype(np.float32) / 255
            up = torch.nn.functional.interpolate(
                torch.from_numpy(lq).permute(2, 0, 1)[None], scale_factor=4, mode='bicubic'
            )
            up = (up[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            psnrs.append(psnr_border4(up, cv2.imread(str(vsrdb_folder / 'gt' / clip / f'{i:08d}.png'))))
    assert results['Bicubic']['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert results['Bicubic']['eval_frames'] == 6
    png = cv2.imread(str(out / 'benchmark.png'))
    assert png is not None and png.shape[0] > 100


def test_visualize_writes_pngs(tmp_path, vsrdb_folder, tiny_ckpt):
    opt = tmp_path / 'net.yml'
    opt.write_text('network_g:\n  type: FMANet\n' + ''.join(f'  {k}: {v}\n' for k, v in TINY_NET.items()))
    out = tmp_path / 'vis'
    argv = ['-i', str(vsrdb_folder / 'lq' / '000'), '--gt', str(vsrdb_folder / 'gt' / '000'), '--frame', '0']
    argv += ['--ckpt', str(tiny_ckpt), '-opt', str(opt), '--pixels', '8,8', '2,13', '--device', 'cpu', '-o', str(out)]
    assert load_tool('visualize').main(argv) == 0
    for name in ('flows', 'kernels_d', 'kernels_r', 'strip'):
        img = cv2.imread(str(out / f'{name}.png'))
        assert img is not None and img.size > 0, name
    strip = cv2.imread(str(out / 'strip.png'))
    assert strip.shape == (20 + 64, 4 * 64 + 3 * 4, 3)  # labels over input, bicubic, output, GT; 4 px gaps
    gt = cv2.imread(str(vsrdb_folder / 'gt' / '000' / '00000000.png'))
    np.testing.assert_array_equal(strip[20:, -64:], gt)
    for k in range(4):  # every panel has a label: dark text on a white bar
        bar = strip[:20, k * 68 : k * 68 + 64]
        assert (bar < 128).any() and (bar == 255).mean() > 0.5


def test_visualize_kernels_are_normalised():
    vis = load_tool('visualize')
    torch.manual_seed(0)
    logits = torch.randn(1, 16, 3, 5, 6)
    kd = vis.degradation_kernels(logits, (2, 3))
    assert kd.shape == (3, 4, 4) and kd.sum() == pytest.approx(1.0, abs=1e-5) and (kd > 0).all()
    raw = torch.randn(1, 4 * 4 * 9, 3, 5, 6)
    kr = vis.restoration_kernels(raw, (1, 4), scale=4)
    assert kr.shape == (3, 12, 12)
    # each sub-pixel's 3x3 block summed over the frames is 1 (FGDF upsampling normalisation)
    blocks = kr.reshape(3, 4, 3, 4, 3).sum(axis=(0, 2, 4))
    np.testing.assert_allclose(blocks, np.ones((4, 4)), atol=1e-5)
    # mosaic block (s1, s2) of frame t is channel block s1*s + s2 (channel order (s1, s2, ky, kx)), normalised by
    # subtracting its mean over the frames and taps and adding 1 / (t * k_r^2)
    taps = raw[0, (1 * 4 + 2) * 9 : (1 * 4 + 3) * 9, :, 1, 4]  # (s1=1, s2=2): (9 taps, 3 frames)
    expected = taps[:, 0] - taps.mean() + 1 / 27
    np.testing.assert_allclose(kr[0, 3:6, 6:9].reshape(-1), expected.numpy(), atol=1e-6)


# ------------------------------------------------------------- any BasicSR video model, training option files


def write_training_options(path: Path, data: Path, network: dict, name: str) -> Path:
    """A training option file (datasets.train + datasets.val, no clip/test keys) over the tiny test folder."""
    opt = {
        'name': name,
        'scale': 4,
        'num_gpu': 0,
        'datasets': {
            'train': {'name': 't', 'type': 'VSRDBDataset', 'dataroot_lq': str(data / 'lq'), 'gt_size': 32},
            'val': {'name': 'tiny_val', 'type': 'VSRDBVideoTestDataset', 'dataroot_lq': str(data / 'lq'),
                    'dataroot_gt': str(data / 'gt'), 'io_backend': {'type': 'disk'}, 'num_frame': 5},
        },
        'network_g': network,
        'path': {'pretrain_network_g': None, 'strict_load_g': True},
        'train': {'total_iter': 7, 'optim_g': {'type': 'Adam', 'lr': 1e-4}},
    }  # fmt: skip
    opt['datasets']['train'].update(batch_size_per_gpu=2, num_frame=3)
    path.write_text(yaml.safe_dump(opt))
    return path


TINY_EDVR = dict(type='EDVR', num_feat=8, num_frame=5, deformable_groups=1, num_extract_block=1,
                 num_reconstruct_block=1, center_frame_idx=None, with_tsa=False)  # fmt: skip


def save_random_weights(network: dict, path: Path) -> torch.nn.Module:
    from fmanet_plugin.utils.runtime import build_network_from_opt

    torch.manual_seed(1)
    net = build_network_from_opt(network)
    for p in net.parameters():  # visible outputs: perturb every weight
        p.data.add_(0.01 * torch.randn_like(p))
    torch.save({'params': net.state_dict()}, path)
    return net.eval()


@pytest.mark.parametrize('arch', ['EDVR', 'FMANet'])
def test_test_tool_scores_training_option_files(tmp_path, vsrdb_folder, arch):
    network = TINY_EDVR if arch == 'EDVR' else {'type': 'FMANet', 'stage': 2, **TINY_NET}
    ckpt = tmp_path / 'net.pth'
    net = save_random_weights(network, ckpt)
    opt = write_training_options(tmp_path / 'train.yml', vsrdb_folder, network, f'tiny_{arch}')
    results = tmp_path / 'results'
    argv = ['-opt', str(opt), '--ckpt', str(ckpt), '--results-root', str(results), '--save-img']
    assert load_tool('test').main(argv) == 0
    rows = {(r['protocol'], r['clip']): r for r in read_csv(results / 'tiny_val_metrics.csv')}
    window = 5 if arch == 'EDVR' else 3
    for clip in ('000', '001'):
        gts = [cv2.imread(str(vsrdb_folder / 'gt' / clip / f'{i:08d}.png')) for i in range(5)]
        lqs = [cv2.imread(str(vsrdb_folder / 'lq' / clip / f'{i:08d}.png')) for i in range(5)]
        outs = []
        for i in range(5):  # independent restoration: the edge-padded window, by hand
            idx = [min(max(i + d, 0), 4) for d in range(-(window // 2), window // 2 + 1)]
            lq = torch.from_numpy(np.stack([lqs[j][..., ::-1] for j in idx]).astype(np.float32) / 255)
            with torch.no_grad():
                out = net(lq.permute(0, 3, 1, 2)[None])
            out = out['output'] if isinstance(out, dict) else out
            img = (out[0].clamp(0, 1).permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)
            written = cv2.imread(str(results / 'visualization/tiny_val' / clip / f'{i:08d}.png'))
            assert np.abs(written.astype(int) - img.astype(int)).max() <= 1
            outs.append(written)
        kept = range(1, 4)  # the common skip: 1 frame at each end for every model
        assert rows['released', clip]['frames'] == '3'
        expected = np.mean([psnr_border4(outs[i], gts[i]) for i in kept])
        assert float(rows['released', clip]['psnr_rgb']) == pytest.approx(expected, abs=1e-6)
        assert float(rows['all', clip]['tof']) == pytest.approx(calculate_tof(outs, gts), rel=1e-6)


def test_test_tool_recurrent_chunked_equals_whole_clip_with_full_overlap(tmp_path, vsrdb_folder):
    network = {'type': 'SmallFrameBasicVSR', 'num_feat': 4, 'num_block': 1, 'spynet_path': None}
    ckpt = tmp_path / 'net.pth'
    save_random_weights(network, ckpt)
    opt = write_training_options(tmp_path / 'train.yml', vsrdb_folder, network, 'tiny_bvsr')
    tool = load_tool('test')
    assert tool.main(['-opt', str(opt), '--ckpt', str(ckpt), '--results-root', str(tmp_path / 'whole')]) == 0
    argv = ['-opt', str(opt), '--ckpt', str(ckpt), '--results-root', str(tmp_path / 'chunk'), '--chunk', '2']
    assert tool.main([*argv, '--overlap', '4']) == 0  # overlap >= t - 1: every piece is the whole clip
    whole, chunked = (read_csv(tmp_path / d / 'tiny_val_frames.csv') for d in ('whole', 'chunk'))
    assert [r['psnr_rgb'] for r in whole] == [r['psnr_rgb'] for r in chunked]
    assert 'chunks of 2 frames with 4 frames of overlap' in (tmp_path / 'chunk' / 'tiny_val_metrics.md').read_text()


def test_test_tool_rejects_stage1_options(tmp_path, vsrdb_folder):
    opt = write_training_options(tmp_path / 'train.yml', vsrdb_folder, {'type': 'FMANet', 'stage': 1}, 's1')
    with pytest.raises(ValueError, match='stage is 1'):
        load_tool('test').main(['-opt', str(opt), '--ckpt', 'x.pth'])


def test_benchmark_runs_from_option_files_match_test_tool(tmp_path, vsrdb_folder):
    ckpt = tmp_path / 'edvr.pth'
    save_random_weights(TINY_EDVR, ckpt)
    opt = write_training_options(tmp_path / 'train.yml', vsrdb_folder, TINY_EDVR, 'tiny_edvr_run')
    out = tmp_path / 'bench'
    argv = ['--checkpoints', f'EDVRrun={opt}:{ckpt}', '--models', 'Bicubic', '--warmup', '0', '--runs', '1']
    assert load_tool('benchmark').main([*argv, '--device', 'cpu', '--out-dir', str(out), '--no-isolate']) == 0
    rows = {r['model']: r for r in read_csv(out / 'benchmark.csv')}
    assert set(rows) == {'EDVRrun', 'Bicubic'}
    run = rows['EDVRrun']
    for key in ('params_m', 'gmacs_per_frame', 'latency_ms_per_frame', 'psnr', 'psnr_y', 'ssim', 'tof'):
        assert math.isfinite(float(run[key])), key
    assert float(run['gmacs_per_frame']) > 0 and run['eval_frames'] == '6'  # 2 clips x 5 frames, 1 skipped per end
    # footing from the option file
    assert (run['iterations'], run['gt_patch'], run['batch'], run['frames']) == ('7', '32', '2', '3')
    # same frames, same numbers as tools/test.py
    load_tool('test').main(['-opt', str(opt), '--ckpt', str(ckpt), '--results-root', str(tmp_path / 'test')])
    average = {r['protocol']: r for r in read_csv(tmp_path / 'test' / 'tiny_val_metrics.csv') if r['clip'] == 'average'}
    for bench_key, test_key in (('psnr', 'psnr_rgb'), ('psnr_y', 'psnr_y'), ('ssim', 'ssim'), ('tof', 'tof')):
        assert float(run[bench_key]) == pytest.approx(float(average['released'][test_key]), rel=1e-9)
    table = [line for line in (out / 'benchmark.md').read_text().splitlines() if line.startswith('|')]
    header = [c.strip() for c in table[0].strip('|').split('|')]
    assert header[-6:] == ['Iterations', 'GT patch', 'Batch', 'Frames', 'Training data', 'Wall time (s)']
    assert all(len(line.strip('|').split('|')) == len(header) for line in table)
    png = cv2.imread(str(out / 'benchmark.png'))
    assert png is not None and png.shape[1] > 800  # two panels: PSNR vs GMACs and vs latency
