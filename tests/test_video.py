"""Video I/O through PyAV and tools/prepare_vsrdb.py on tiny generated videos (with generated audio)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.video_io import SWS_FLAGS, VideoReader, VideoWriter

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_NET, load_tool

ROOT = Path(__file__).resolve().parents[1]


def encode_video(path: Path, frames: list[np.ndarray], fps: int = 10, audio: bool = True, rotation: int = 0) -> None:
    """H.264 (near-lossless) video of uint8 BGR frames, with a 440 Hz AAC sine over the same duration."""
    with av.open(str(path), 'w') as container:
        video = container.add_stream('libx264', rate=fps)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], 'yuv420p'
        video.options = {'crf': '0'}
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream('aac', rate=44100) if audio else None
        if sound is not None:
            sound.layout = 'mono'
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format='bgr24').reformat(
                format='yuv420p', interpolation=SWS_FLAGS
            )
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        if sound is not None:
            rate, total = 44100, round(len(frames) / fps * 44100)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format='flt', layout='mono')
                chunk.sample_rate, chunk.pts = rate, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)


def smooth_texture(seed: int, size=(300, 400)) -> np.ndarray:
    """A smooth random colour texture (large blobs: small frame-to-frame change while panning)."""
    coarse = np.random.default_rng(seed).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    return cv2.resize(coarse, size[::-1], interpolation=cv2.INTER_CUBIC)


def pan(texture: np.ndarray, num: int, size=(72, 136), speed=2) -> list[np.ndarray]:
    return [texture[10 : 10 + size[0], speed * i : speed * i + size[1]].copy() for i in range(num)]


def probe(path: Path) -> dict:
    """Frame rate, decoded frames, and per stream the duration (from the packets) and audio payloads, with PyAV."""
    info = {}
    with av.open(str(path)) as container:
        info['fps'] = container.streams.video[0].average_rate
        info['audio'] = {'codec': container.streams.audio[0].codec_context.name} if container.streams.audio else None
        spans = {}
        for packet in container.demux():
            if packet.size == 0:
                continue
            kind = packet.stream.type
            low, high = spans.get(kind, (math.inf, -math.inf))
            spans[kind] = (
                min(low, packet.pts * packet.time_base),
                max(high, (packet.pts + packet.duration) * packet.time_base),
            )
            if kind == 'audio':
                info['audio'].setdefault('payloads', []).append(bytes(packet))
        info['video_duration'] = float(spans['video'][1] - spans['video'][0])
        if info['audio']:
            info['audio']['duration'] = float(spans['audio'][1] - spans['audio'][0])
    with av.open(str(path)) as container:
        info['frames'] = [f.to_ndarray(format='bgr24').astype(int) for f in container.decode(video=0)]
    return info


# ------------------------------------------------------------------------------------------------ video_io


def test_reader_time_range_and_rotation(tmp_path):
    frames = [np.full((16, 24, 3), 10 * i, np.uint8) for i in range(12)]
    frames = [cv2.rectangle(f, (0, 0), (3, 3), (255, 255, 255), -1) for f in frames]  # white top-left corner
    encode_video(tmp_path / 'r.mp4', frames, rotation=90)
    reader = VideoReader(tmp_path / 'r.mp4', start=0.3, end=0.8)
    assert reader.info.rotation == 90 and reader.fps == 10
    got = list(reader)
    assert [round(t, 3) for _, t, _ in got] == [0.3, 0.4, 0.5, 0.6, 0.7]
    for (_, _, image), expected in zip(got, frames[3:8]):
        assert image.shape == (24, 16, 3)  # upright: 90 degrees counter-clockwise
        assert image[-2, 1].min() > 200 and image[1, 1].max() < 150  # the corner went to the bottom left
        assert abs(int(image[12, 8, 0]) - int(expected[8, 12, 0])) <= 2


def test_writer_remuxes_audio_unchanged(tmp_path):
    frames = pan(smooth_texture(0), 12, size=(32, 48))
    encode_video(tmp_path / 'src.mp4', frames)
    with VideoWriter(tmp_path / 'out.mp4', 10, audio_from=tmp_path / 'src.mp4') as writer:
        for _, _, image in VideoReader(tmp_path / 'src.mp4'):
            writer.write(image)
    src, out = probe(tmp_path / 'src.mp4'), probe(tmp_path / 'out.mp4')
    assert out['fps'] == src['fps'] == 10 and len(out['frames']) == 12
    assert out['video_duration'] == pytest.approx(src['video_duration'])
    assert out['audio']['codec'] == 'aac' and out['audio']['payloads'] == src['audio']['payloads']
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(out['frames'], src['frames'])) < 2
    assert not list(tmp_path.glob('.tmp_*'))


# ------------------------------------------------------------------------------------------------ inference


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    torch.manual_seed(0)
    torch.save({'params': FMANet(**TINY_NET).state_dict()}, root / 'tiny.pth')
    (root / 'net.yml').write_text(
        'network_g:\n  type: FMANet\n' + ''.join(f'  {k}: {v}\n' for k, v in TINY_NET.items())
    )
    return ['--ckpt', str(root / 'tiny.pth'), '-opt', str(root / 'net.yml'), '--device', 'cpu']


def test_inference_video_keeps_frames_rate_duration_audio(tmp_path, tiny_setup):
    inference = load_tool('inference')
    encode_video(tmp_path / 'in.mp4', pan(smooth_texture(1), 12, size=(16, 24)))
    assert inference.main(['-i', str(tmp_path / 'in.mp4'), '-o', str(tmp_path / 'png'), *tiny_setup]) == 0
    assert inference.main(['-i', str(tmp_path / 'in.mp4'), '-o', str(tmp_path / 'out.mp4'), *tiny_setup]) == 0
    src, out = probe(tmp_path / 'in.mp4'), probe(tmp_path / 'out.mp4')
    assert out['fps'] == src['fps'] and len(out['frames']) == 12
    assert out['video_duration'] == pytest.approx(src['video_duration'])
    assert out['audio']['payloads'] == src['audio']['payloads']
    pngs = sorted((tmp_path / 'png').glob('*.png'))
    assert len(pngs) == 12
    for index in (0, 11):  # first and last frames are there and are the right ones
        png = cv2.imread(str(pngs[index])).astype(int)
        assert out['frames'][index].shape == (64, 96, 3)
        assert np.abs(out['frames'][index] - png).mean() < 3

    # a time range: its frames only, the audio cut to match
    argv = ['-i', str(tmp_path / 'in.mp4'), '-o', str(tmp_path / 'part.mkv'), '--start', '0.4', '--end', '0.9']
    assert inference.main([*argv, '--codec', 'ffv1', *tiny_setup]) == 0
    part = probe(tmp_path / 'part.mkv')
    assert len(part['frames']) == 5 and part['video_duration'] == pytest.approx(0.5)
    assert part['audio']['duration'] == pytest.approx(0.5, abs=0.03)  # whole AAC packets (23 ms)
    diffs = [np.abs(part['frames'][0] - cv2.imread(str(pngs[i])).astype(int)).mean() for i in (3, 4, 5)]
    assert diffs[1] < 3 and diffs[1] < min(diffs[0], diffs[2])  # the first frame of the range is input frame 4


def test_inference_memory_does_not_grow_with_length(tmp_path, tiny_setup):
    # frames live as numpy arrays (traced by tracemalloc): a streaming pipeline holds a few whatever the length
    inference = load_tool('inference')
    peaks = {}
    for num in (6, 60):
        video = tmp_path / f'{num}.mp4'
        encode_video(video, pan(smooth_texture(2), num, size=(24, 32), speed=1), audio=False)
        tracemalloc.start()
        inference.main(['-i', str(video), '-o', str(tmp_path / f'{num}_out.mp4'), *tiny_setup])
        peaks[num] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    frame_bytes = 96 * 128 * 3
    assert peaks[60] < peaks[6] + 10 * frame_bytes  # holding every output would add 54 frames


# ------------------------------------------------------------------------------------------------ prepare_vsrdb


def srgb_decode(v: float) -> float:
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def srgb_encode(v: float) -> float:
    return v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def run_prepare(*argv: str) -> dict:
    return load_tool('prepare_vsrdb').main([*argv, '--flow-radius', '0'])


def test_blur_is_linear_light_average_and_sizes(tmp_path):
    # constant-colour frames: every pixel of a blurry LR frame is the linear-light mean of its 3 source frames
    colours = [(0, 0, 0), (255, 128, 10), (255, 255, 40), (64, 32, 200), (128, 100, 250), (200, 0, 90)]
    src = tmp_path / 'frames'
    src.mkdir()
    for i, colour in enumerate(colours):
        cv2.imwrite(str(src / f'{i:03d}.png'), np.full((45, 70, 3), colour, np.uint8))  # BGR
    common = ['-i', str(src), '--blur-frames', '3', '--clip-length', '2', '--min-clip-length', '1', '--val-clips', '0']
    common += ['--scene-threshold', '999']
    run_prepare(*common, '-o', str(tmp_path / 'lin'))
    run_prepare(*common, '-o', str(tmp_path / 'srgb'), '--no-linear')
    for root, linear in ((tmp_path / 'lin', True), (tmp_path / 'srgb', False)):
        for j in range(2):
            group = colours[3 * j : 3 * j + 3]
            expected = []
            for c in range(3):
                values = [g[c] / 255 for g in group]
                mean = srgb_encode(sum(map(srgb_decode, values)) / 3) if linear else sum(values) / 3
                expected.append(round(mean * 255))
            blur = cv2.imread(str(root / 'train_blur_bicubic/X4/000' / f'{j:08d}.png'))
            sharp = cv2.imread(str(root / 'train_sharp/000' / f'{j:08d}.png'))
            sharp_lr = cv2.imread(str(root / 'train_sharp_bicubic/X4/000' / f'{j:08d}.png'))
            # HR cropped to multiples of 32 (LR multiples of 8): 70x45 -> 64x32, LR 16x8
            assert sharp.shape == (32, 64, 3) and blur.shape == sharp_lr.shape == (8, 16, 3)
            assert (blur.astype(int) == expected).all()
            assert (sharp == group[1]).all() and (sharp_lr == group[1]).all()  # the middle frame
    assert (tmp_path / 'lin/meta_info_train.txt').read_text() == '000 2 (32,64,3)\n'
    # linear light brightens a black/colour mix compared with averaging the stored values
    lin = cv2.imread(str(tmp_path / 'lin/train_blur_bicubic/X4/000/00000000.png'))
    srgb = cv2.imread(str(tmp_path / 'srgb/train_blur_bicubic/X4/000/00000000.png'))
    assert (lin[0, 0] > srgb[0, 0]).all()


def test_scene_cut_splits_clips(tmp_path):
    frames = pan(smooth_texture(3), 30) + [255 - f[::-1] for f in pan(smooth_texture(4), 25, speed=3)]
    encode_video(tmp_path / 'cut.mp4', frames, fps=30)
    argv = ['-i', str(tmp_path / 'cut.mp4'), '-o', str(tmp_path / 'ds'), '--blur-frames', '3']
    summary = run_prepare(*argv, '--clip-length', '6', '--min-clip-length', '3', '--min-scene-len', '5')
    plan = json.loads((tmp_path / 'ds/.prepare/plan.json').read_text())
    assert plan['sources'][0]['scenes'] == [[0, 30], [30, 55]]
    # scene 1: 10 groups -> clips of 6 and 4; scene 2: 8 groups -> 6 (the 2 left are < 3)
    assert [(c['first'], c['last'], c['num_frames']) for c in plan['clips']] == [(0, 17, 6), (18, 29, 4), (30, 47, 6)]
    assert summary['clips'] == 3 and summary['frames'] == 16
    assert (tmp_path / 'ds/meta_info_val.txt').read_text() == '002 6 (64,128,3)\n'
    assert all(c['fps'] == 10 for c in plan['clips'])
    # clip 001 frame 0 is source frame 19 (group 18, 19, 20), centre-cropped 72x136 -> 64x128
    decoded = [image for _, _, image in VideoReader(tmp_path / 'cut.mp4')]
    sharp = cv2.imread(str(tmp_path / 'ds/train_sharp/001/00000000.png'))
    assert np.array_equal(sharp, decoded[19][4:68, 4:132])


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, 'the run ended before it could be interrupted'
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_resume_after_kill(tmp_path):
    frames = pan(smooth_texture(5), 27, size=(256, 384), speed=1)
    encode_video(tmp_path / 'v.mp4', frames, audio=False)
    out = tmp_path / 'ds'
    argv = [sys.executable, str(ROOT / 'tools/prepare_vsrdb.py'), '-i', str(tmp_path / 'v.mp4'), '-o', str(out)]
    argv += ['--blur-frames', '3', '--clip-length', '3', '--min-clip-length', '3', '--height', '128']
    argv += ['--scene-threshold', '999', '--flow-updates', '2', '--batch-size', '4']
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}

    def killed_when(predicate) -> None:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(predicate, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()

    state = out / '.prepare'
    killed_when(lambda: (out / 'train_sharp/001').is_dir())  # during the frames of clip 001
    assert (state / '000.frames').is_file() and not (state / '002.frames').exists()
    assert not (out / 'meta_info_train.txt').exists()
    killed_when(lambda: any((out / 'train_flow').glob('*/*.npy')))  # during the flows
    assert all((state / f'{c:03d}.frames').is_file() for c in range(3)) and not (state / '002.done').exists()
    done_before = {p.name: p.stat().st_mtime_ns for p in state.glob('*.done')}
    load_tool('prepare_vsrdb').main(argv[2:])  # the run that finishes the job
    assert all(p.stat().st_mtime_ns == done_before[p.name] for p in state.glob('*.done') if p.name in done_before)

    # the same frames as an uninterrupted run, every flow present, nothing temporary left
    fresh = tmp_path / 'fresh'
    load_tool('prepare_vsrdb').main([*argv[2:5], str(fresh), *argv[6:], '--flow-radius', '0'])
    for stream in ('train_sharp', 'train_sharp_bicubic/X4', 'train_blur_bicubic/X4'):
        files = sorted(p.relative_to(out) for p in (out / stream).rglob('*.png'))
        assert len(files) == 9 and files == sorted(p.relative_to(fresh) for p in (fresh / stream).rglob('*.png'))
        assert all((out / f).read_bytes() == (fresh / f).read_bytes() for f in files)
    flows = sorted((out / 'train_flow').rglob('*.npy'))
    assert len(flows) == 3 * 4 and all(np.load(f).shape == (32, 48, 2) for f in flows)
    assert not [p for p in out.rglob('.*') if p.is_file()]  # no temporary file of a killed write is left
    assert (out / 'meta_info_train.txt').read_text().splitlines() == [f'00{c} 3 (128,192,3)' for c in range(2)]


def test_flow_interpolation_midpoint(tmp_path):
    # a texture moving 6 px per frame: the interpolated middle frame is the texture moved by 3 px
    from fmanet_plugin.data.vsrdb_synthesis import FlowInterpolator, srgb_to_linear
    from fmanet_plugin.utils.raft_flow import load_raft

    texture = smooth_texture(6, size=(160, 200)).astype(np.float32) / 255
    frames = [srgb_to_linear(texture[16:144, x : x + 128]) for x in (20, 23, 26)]
    interpolator = FlowInterpolator(load_raft(ROOT / 'tests/data/raft-small.pth'), factor=2)
    (middle,) = interpolator.between(frames[0], frames[2], linear=True)
    interior = (slice(16, -16), slice(16, -16))
    error = np.abs(middle - frames[1])[interior].mean()
    assert error < 0.2 * np.abs((frames[0] + frames[2]) / 2 - frames[1])[interior].mean()  # far better than a blend
