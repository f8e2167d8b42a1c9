"""Build a VSRDB training set (REDS layout) from sharp videos or frame folders, resumably.

Stages: (1) plan: every source is decoded once, its scene cuts detected and its scenes cut into clips (saved to
``.prepare/plan.json``); (2) frames: each source is decoded again and every clip synthesised
(:mod:`fmanet_plugin.data.vsrdb_synthesis`) into ``train_sharp``, ``train_sharp_bicubic/X<s>`` and
``train_blur_bicubic/X<s>``; (3) flows: RAFT flow from each sharp LR frame to its neighbours
(:func:`fmanet_plugin.utils.raft_flow.generate_flows`) into ``train_flow``; (4) meta files
``meta_info_train.txt`` / ``meta_info_val.txt`` (the last ``val_clips`` clips are held out) and ``clips.txt``
(where each clip comes from).

Resuming: every PNG and flow file is written under a temporary name and renamed; a clip gets the marker
``.prepare/<clip>.frames`` when all its frames are written and ``.prepare/<clip>.done`` when its flows are too.
A rerun skips clips marked done, computes the missing flows of clips marked ``.frames`` (flow files already
present are kept) and rebuilds every other clip from scratch; the meta files are written last.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fmanet_plugin.data.vsrdb_synthesis import (
    FLOW_STRIDE,
    ClipSpan,
    ClipSynthesizer,
    FlowInterpolator,
    SceneCutDetector,
    SynthesisOptions,
    fit_frame,
    plan_scene_clips,
)
from fmanet_plugin.utils.atomic_io import atomic_imwrite, atomic_write_text, remove_temporary_files
from fmanet_plugin.utils.frame_io import FrameSource

from basicsr.utils import get_root_logger
from tqdm import tqdm

STATE_DIR = '.prepare'
PLAN_VERSION = 1


@dataclass
class PrepareOptions:
    """Options of :func:`prepare_vsrdb` (the command-line flags of ``tools/prepare_vsrdb.py``)."""

    inputs: list[str]
    out: str
    blur_frames: int = 5
    group_stride: int | None = None
    linear: bool = True
    interpolate: int = 1
    scale: int = 4
    height: int | None = None
    clip_length: int = 50
    clip_stride: int | None = None
    min_clip_length: int = 5
    scene_threshold: float = 27.0
    min_scene_len: int = 15
    start: float | None = None
    end: float | None = None
    fps: float | None = None
    val_clips: int = 1
    flow_radius: int = 1
    raft_weights: str | None = None
    raft_model: str = 'auto'
    flow_updates: int = 12
    batch_size: int = 8
    device: str = 'cpu'

    def settings(self) -> dict:
        """What the dataset depends on (a rerun must use the same)."""
        keys = (
            'blur_frames group_stride linear interpolate scale height clip_length clip_stride min_clip_length '
            'scene_threshold min_scene_len start end flow_radius'
        ).split()
        return {k: getattr(self, k) for k in keys}

    def check(self) -> None:
        """Raise a ValueError naming the first invalid option."""
        if self.blur_frames < 1 or self.blur_frames % 2 == 0:
            raise ValueError(
                f'--blur-frames must be odd (the sharp target is the middle frame), got {self.blur_frames}'
            )
        checks = {
            '--group-stride': (self.group_stride is None or self.group_stride >= 1, self.group_stride),
            '--interpolate': (self.interpolate >= 1, self.interpolate),
            '--scale': (self.scale >= 1, self.scale),
            '--clip-length': (self.clip_length >= 1, self.clip_length),
            '--clip-stride': (self.clip_stride is None or self.clip_stride >= 1, self.clip_stride),
            '--min-clip-length': (1 <= self.min_clip_length <= self.clip_length, self.min_clip_length),
            '--val-clips': (self.val_clips >= 0, self.val_clips),
            '--flow-radius': (self.flow_radius >= 0, self.flow_radius),
        }
        for flag, (ok, value) in checks.items():
            if not ok:
                raise ValueError(f'{flag}: invalid value {value!r}')
        if (self.flow_radius > 0 or self.interpolate > 1) and not self.raft_weights:
            raise ValueError('--raft-weights is needed for flows and interpolation (or --flow-radius 0)')


def stream_dirs(scale: int) -> dict[str, str]:
    """Output folder of each stream, relative to the dataset root."""
    return {
        'sharp': 'train_sharp',
        'sharp_lr': f'train_sharp_bicubic/X{scale}',
        'blur_lr': f'train_blur_bicubic/X{scale}',
        'flow': 'train_flow',
    }


def _source_signature(path: Path) -> dict:
    stat = path.stat()
    if path.is_dir():
        files = [p.stat() for p in path.iterdir() if p.is_file()]
        return {'path': str(path.resolve()), 'files': len(files), 'mtime': max((f.st_mtime for f in files), default=0)}
    return {'path': str(path.resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime}


def _open_source(path: str, options: PrepareOptions) -> FrameSource:
    is_video = not Path(path).is_dir()
    return FrameSource(path, options.start if is_video else None, options.end if is_video else None)


def make_plan(options: PrepareOptions) -> dict:
    """Stage 1: detect the scene cuts of every source and cut the scenes into clips."""
    clips = []
    sources = []
    multiple = options.scale * FLOW_STRIDE
    for path in options.inputs:
        source = _open_source(path, options)
        fps = float(source.fps or options.fps or 25.0)
        detector = SceneCutDetector(options.scene_threshold, options.min_scene_len, fps)
        size = None
        for _, frame in tqdm(source, total=source.count, desc=f'scenes {Path(path).name}', unit='frame'):
            if size is None:
                size = fit_frame(frame, options.height, multiple).shape[:2]
            detector.add(frame)
        scenes = detector.scenes()
        sources.append({**_source_signature(Path(path)), 'frames': detector.count, 'fps': fps, 'scenes': scenes})
        factor = options.interpolate
        for scene in scenes:
            spans = plan_scene_clips(
                scene,
                options.blur_frames,
                options.group_stride or options.blur_frames,
                factor,
                options.clip_length,
                options.clip_stride or options.clip_length,
                options.min_clip_length,
            )
            out_fps = fps * factor / (options.group_stride or options.blur_frames)
            for span in spans:
                clips.append({'source': path, 'scene': list(scene), 'fps': out_fps, 'hw': list(size), **asdict(span)})
    width = max(3, len(str(len(clips) - 1)))
    for i, clip in enumerate(clips):
        clip['name'] = f'{i:0{width}d}'
    return {'version': PLAN_VERSION, 'settings': options.settings(), 'sources': sources, 'clips': clips}


def _load_or_make_plan(options: PrepareOptions, root: Path, logger) -> dict:
    plan_path = root / STATE_DIR / 'plan.json'
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        current = [_source_signature(Path(p))['path'] for p in options.inputs]
        if plan.get('settings') != options.settings() or [s['path'] for s in plan['sources']] != current:
            raise ValueError(
                f'{root} was prepared from other inputs or settings ({plan_path}); use another --out, the same '
                'options, or --overwrite'
            )
        for source, path in zip(plan['sources'], options.inputs):
            if any(source.get(k) != v for k, v in _source_signature(Path(path)).items()):
                raise ValueError(f'{path} changed since {root} was planned ({plan_path}); use --overwrite')
        logger.info(f'resuming {root}: {len(plan["clips"])} clips planned')
        return plan
    plan = make_plan(options)
    atomic_write_text(json.dumps(plan, indent=1), str(plan_path))
    return plan


def _marker(root: Path, clip: str, stage: str) -> Path:
    return root / STATE_DIR / f'{clip}.{stage}'


def _synthesise_source(path: str, clips: list[dict], options: PrepareOptions, root: Path, interpolator) -> int:
    """Stage 2 for the clips of one source; returns the number of frames written."""
    dirs = stream_dirs(options.scale)
    synth_options = SynthesisOptions(
        options.blur_frames, options.group_stride, options.linear, options.scale, interpolator
    )
    pending = sorted(clips, key=lambda c: c['first'])
    for clip in pending:  # anything half-written is redone from scratch
        for folder in dirs.values():
            shutil.rmtree(root / folder / clip['name'], ignore_errors=True)
    last = max(c['last'] for c in pending)
    active: list[tuple[dict, ClipSynthesizer]] = []
    written = 0
    source = _open_source(path, options)
    multiple = options.scale * FLOW_STRIDE
    bar = tqdm(total=sum(c['num_frames'] for c in pending), desc=f'frames {Path(path).name}', unit='frame')
    for index, (_, frame) in enumerate(source):
        while pending and pending[0]['first'] == index:
            clip = pending.pop(0)
            span = ClipSpan(clip['first'], clip['last'], clip['skip'], clip['num_frames'])
            active.append((clip, ClipSynthesizer(span, synth_options)))
        if not active:
            if index >= last:
                break
            continue
        frame = fit_frame(frame, options.height, multiple)
        for clip, synth in active:
            if index > clip['last']:
                continue
            for sharp, sharp_lr, blur_lr in synth.push(frame):
                name = f'{synth.emitted - 1:08d}.png'
                atomic_imwrite(sharp, str(root / dirs['sharp'] / clip['name'] / name))
                atomic_imwrite(sharp_lr, str(root / dirs['sharp_lr'] / clip['name'] / name))
                atomic_imwrite(blur_lr, str(root / dirs['blur_lr'] / clip['name'] / name))
                written += 1
                bar.update()
        for clip, synth in [a for a in active if a[0]['last'] <= index]:
            if not synth.complete:
                raise ValueError(f'{path}: clip {clip["name"]} got {synth.emitted} of {clip["num_frames"]} frames')
            atomic_write_text(json.dumps({'frames': synth.emitted}), str(_marker(root, clip['name'], 'frames')))
            active.remove((clip, synth))
        if index >= last:
            break
    bar.close()
    if active or pending:
        raise ValueError(f'{path} has fewer frames than when it was planned; use --overwrite')
    return written


def _folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob('*') if f.is_file() and STATE_DIR not in f.parts)


def prepare_vsrdb(options: PrepareOptions, overwrite: bool = False) -> dict:
    """Build (or finish) the dataset; returns a summary (clips, frames, bytes, seconds per stage).

    Raises:
        ValueError: For invalid options, or an output folder prepared with other settings (without ``overwrite``).
    """
    options.check()
    logger = get_root_logger()
    root = Path(options.out)
    dirs = stream_dirs(options.scale)
    if overwrite:
        for name in [*dirs.values(), STATE_DIR, 'meta_info_train.txt', 'meta_info_val.txt', 'clips.txt']:
            target = root / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    times = {}
    tic = time.perf_counter()
    plan = _load_or_make_plan(options, root, logger)
    times['plan'] = time.perf_counter() - tic
    clips = plan['clips']
    if not clips:
        raise ValueError(f'no clip of at least {options.min_clip_length} frames could be cut from {options.inputs}')
    if options.val_clips >= len(clips):
        raise ValueError(f'--val-clips {options.val_clips} leaves no training clip ({len(clips)} clips in all)')

    raft = interpolator = None
    if options.flow_radius > 0 or options.interpolate > 1:
        from fmanet_plugin.utils.raft_flow import load_raft

        raft = load_raft(options.raft_weights, options.raft_model, options.device)
        if options.interpolate > 1:
            interpolator = FlowInterpolator(raft, options.interpolate)

    tic = time.perf_counter()
    todo = [c for c in clips if not _marker(root, c['name'], 'frames').is_file()]
    written = 0
    for path in options.inputs:
        mine = [c for c in todo if c['source'] == path]
        if mine:
            written += _synthesise_source(path, mine, options, root, interpolator)
    times['frames'] = time.perf_counter() - tic

    tic = time.perf_counter()
    flow_todo = [c for c in clips if not _marker(root, c['name'], 'done').is_file()]
    if flow_todo and options.flow_radius > 0:
        from fmanet_plugin.utils.raft_flow import generate_flows

        for clip in flow_todo:  # temporary files of a run killed while saving a flow
            remove_temporary_files(root / dirs['flow'] / clip['name'])

        generate_flows(
            raft,
            {c['name']: [f'{i:08d}' for i in range(c['num_frames'])] for c in flow_todo},
            root / dirs['sharp_lr'],
            root / dirs['flow'],
            radius=options.flow_radius,
            batch_size=options.batch_size,
            num_updates=options.flow_updates,
        )
    for clip in flow_todo:
        atomic_write_text(json.dumps({'frames': clip['num_frames']}), str(_marker(root, clip['name'], 'done')))
    times['flows'] = time.perf_counter() - tic

    split = len(clips) - options.val_clips
    meta = [f'{c["name"]} {c["num_frames"]} ({c["hw"][0]},{c["hw"][1]},3)\n' for c in clips]
    atomic_write_text(''.join(meta[:split]), str(root / 'meta_info_train.txt'))
    atomic_write_text(''.join(meta[split:]), str(root / 'meta_info_val.txt'))
    lines = ['# clip frames fps source first_source_frame last_source_frame scene\n']
    lines += [
        f'{c["name"]} {c["num_frames"]} {c["fps"]:.3f} {c["source"]} {c["first"]} {c["last"]} {c["scene"]}\n'
        for c in clips
    ]
    atomic_write_text(''.join(lines), str(root / 'clips.txt'))
    frames = sum(c['num_frames'] for c in clips)
    summary = {
        'clips': len(clips),
        'train_clips': split,
        'val_clips': options.val_clips,
        'frames': frames,
        'frames_written_now': written,
        'clips_skipped': len(clips) - len(todo),
        'hr_size': f'{clips[0]["hw"][1]}x{clips[0]["hw"][0]}',
        'scenes': sum(len(s['scenes']) for s in plan['sources']),
        'bytes': _folder_bytes(root),
        'seconds': {k: round(v, 2) for k, v in times.items()},
    }
    logger.info(
        f'{root}: {summary["clips"]} clips ({split} train, {options.val_clips} val), {frames} frames of '
        f'{summary["hr_size"]} from {summary["scenes"]} scenes, {summary["bytes"] / 2**20:.1f} MiB; '
        f'{summary["clips_skipped"]} clips already done; seconds per stage {summary["seconds"]}'
    )
    return summary
