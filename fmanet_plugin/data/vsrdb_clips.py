"""VSRDB clips in the REDS layout: listing and selecting clips, and checking that their files exist before any is
read (shared by BasicSR's datasets and the OpenMMLab pipeline).

Streams (``<root>/<clip>/<frame>.<ext>`` on disk, key ``clip/frame`` in an LMDB): ``lq`` blurry LR, ``gt`` sharp
HR, ``lq_sharp`` sharp LR and ``flow`` (``<clip>/<centre>_<neighbour>.npy``, float32 (h, w, 2), flow from the
centre frame to the neighbour in LR pixels, x then y; LMDB key ``clip/<centre>_<neighbour>``, raw float32 bytes).
On disk, an image stream may instead be a folder of video files ``<root>/<clip>.<ext>`` (:data:`VIDEO_EXTENSIONS`):
each video is a clip named by its file stem, with frames named ``%08d`` by index. Reading the frames is
:class:`~fmanet_plugin.data.vsrdb_reader.VSRDBReader`'s; the temporal windows are in
:mod:`fmanet_plugin.data.vsrdb_windows`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fmanet_plugin.data.vsrdb_reader import VSRDBReader
from fmanet_plugin.data.vsrdb_video_clips import check_video_stream, list_videos, refuse_video_roots, video_frame_stems
from fmanet_plugin.utils.errors import suggest
from fmanet_plugin.utils.lmdb_io import read_lmdb_meta_info
from fmanet_plugin.utils.video_io import VIDEO_EXTENSIONS, count_video_frames


def check_num_frame(num_frame: int, owner: str) -> int:
    """Return ``num_frame`` if it is an odd positive int, else raise a ValueError naming the option."""
    if not isinstance(num_frame, int) or num_frame < 1 or num_frame % 2 == 0:
        raise ValueError(f"{owner}: option 'num_frame' must be an odd positive integer (2N+1), got {num_frame!r}")
    return num_frame


def _stem_sort_key(stem: str) -> tuple:
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def read_meta_info_file(meta_info_file: str | Path, filename_tmpl: str = '08d') -> dict[str, list[str]]:
    """Read a REDS-style meta info file with lines ``<clip> <num_frames> (h,w,c)``.

    Args:
        meta_info_file (str | Path): The text file.
        filename_tmpl (str): Format spec of the frame stems; frames are numbered from 0. Default: ``'08d'``.

    Returns:
        dict[str, list[str]]: Clip name -> frame file stems, in temporal order.
    """
    path = Path(meta_info_file)
    if not path.is_file():
        raise FileNotFoundError(f"meta_info_file '{path}' not found")
    clips = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"{path}:{line_no}: expected '<clip> <num_frames> (h,w,c)', got {line!r}")
        clips[parts[0]] = [format(i, filename_tmpl) for i in range(int(parts[1]))]
    return clips


def list_clips(opt: dict, root: str, owner: str) -> dict[str, list[str]]:
    """List the clips and frame stems of a dataset.

    From ``opt['meta_info_file']`` if given; otherwise from the LMDB meta info of ``root`` (lmdb backend) or
    from the clip folders under ``root`` (disk backend, files ending with ``.<filename_ext>``) or the video files
    directly under it (one clip per video, frames ``%08d`` by index; see :func:`list_videos`).

    Args:
        opt (dict): Dataset options (``meta_info_file``, ``filename_tmpl``, ``filename_ext``, ``io_backend``).
        root (str): The stream whose contents define the clips (normally ``dataroot_lq``).
        owner (str): Dataset class name for error messages.

    Returns:
        dict[str, list[str]]: Clip name -> frame stems, sorted by clip name.
    """
    if opt.get('meta_info_file'):
        clips = read_meta_info_file(opt['meta_info_file'], opt.get('filename_tmpl', '08d'))
    elif opt['io_backend']['type'] == 'lmdb':
        clips = {}
        for key in read_lmdb_meta_info(root):
            clip, _, stem = key.rpartition('/')
            clips.setdefault(clip, []).append(stem)
    else:
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"{owner}: frame folder '{root}' not found")
        ext = '.' + opt.get('filename_ext', 'png')
        clips = {}
        videos = list_videos(root, owner)
        if videos:
            clips = {clip: video_frame_stems(count_video_frames(path)) for clip, path in videos.items()}
        for clip_dir in root_path.iterdir() if not videos else ():
            stems = [p.stem for p in clip_dir.iterdir() if p.suffix == ext] if clip_dir.is_dir() else []
            if stems:
                clips[clip_dir.name] = stems
        if not clips:
            raise ValueError(
                f"{owner}: '{root}' holds no clip: neither sub-folders of {ext} frames nor video files "
                f'({", ".join(VIDEO_EXTENSIONS)})'
            )
    clips = {clip: sorted(stems, key=_stem_sort_key) for clip, stems in sorted(clips.items())}
    for clip, stems in clips.items():
        check_frame_numbering(clip, stems, root, owner)
    return clips


def check_frame_numbering(clip: str, stems: list[str], root: str, owner: str) -> None:
    """Raise a ValueError naming the clip and the first missing frame if numbered frames skip a number.

    A window across a gap would silently mix frames that are not neighbours. Stems that are not all numbers
    are not checked.
    """
    if not stems or not all(s.isdigit() for s in stems):
        return
    numbers = [int(s) for s in stems]
    if numbers[-1] - numbers[0] + 1 == len(set(numbers)):
        return
    present = set(numbers)
    missing = [n for n in range(numbers[0], numbers[-1] + 1) if n not in present]
    width = len(stems[0]) if len({len(s) for s in stems}) == 1 else 0
    first = str(missing[0]).zfill(width)
    more = f' ({len(missing)} frames missing in all)' if len(missing) > 1 else ''
    raise ValueError(
        f"{owner}: clip '{clip}' under '{root}' has a gap in its frame numbering: frame {first} is missing "
        f'between {stems[0]} and {stems[-1]}{more}'
    )


def check_dataset_files(
    roots: dict[str, str],
    clips: dict[str, list[str]],
    io_backend: str,
    filename_ext: str,
    owner: str,
    flow_radius: int = 0,
) -> None:
    """Check that every configured stream has every frame (and flow) of every clip, before any is read.

    Args:
        roots (dict[str, str]): Stream (``lq``, ``gt``, ``lq_sharp``, ``flow``) -> folder or ``.lmdb``.
        clips (dict[str, list[str]]): The clips the dataset uses -> frame stems.
        io_backend (str): ``'disk'`` or ``'lmdb'``.
        filename_ext (str): Image extension on disk.
        owner (str): Dataset class name for messages.
        flow_radius (int): The flow files needed are those from each centre to its neighbours up to this far,
            for centres whose window lies inside the clip (training windows). Default: 0.

    Raises:
        FileNotFoundError: One line listing the missing folders, clips and frames (the first few of each).
    """
    problems: list[str] = []
    for stream, root in roots.items():
        label = f"dataroot_{stream} '{root}'"
        videos = list_videos(root, owner) if io_backend == 'disk' and stream != 'flow' else {}
        if videos:
            problems += check_video_stream(stream, videos, clips, roots, owner)
            continue
        if io_backend == 'lmdb':
            try:
                present = set(read_lmdb_meta_info(root))
            except (OSError, ValueError):
                problems.append(f'{label}: not an LMDB with meta_info.txt')
                continue
            find = present.__contains__
        elif not Path(root).is_dir():
            problems.append(f'{label}: folder not found')
            continue
        else:
            listing: dict[str, set[str]] = {}

            def find(key: str, root: str = root, listing: dict = listing) -> bool:
                clip, _, name = key.rpartition('/')
                if clip not in listing:
                    folder = Path(root, clip)
                    listing[clip] = set(os.listdir(folder)) if folder.is_dir() else set()
                return name in listing[clip]

        suffix = '' if io_backend == 'lmdb' else ('.npy' if stream == 'flow' else f'.{filename_ext}')
        missing_clips, missing_files = [], []
        for clip, stems in clips.items():
            if stream == 'flow':
                names = [
                    f'{stems[c]}_{stems[n]}'
                    for c in range(flow_radius, len(stems) - flow_radius)
                    for n in range(c - flow_radius, c + flow_radius + 1)
                    if n != c
                ]
            else:
                names = stems
            absent = [f'{clip}/{name}{suffix}' for name in names if not find(f'{clip}/{name}{suffix}')]
            if absent and len(absent) == len(names):
                missing_clips.append(clip)
            else:
                missing_files += absent
        if missing_clips:
            problems.append(f'{label}: {len(missing_clips)} clip(s) missing ({_first(missing_clips)})')
        if missing_files:
            problems.append(f'{label}: {len(missing_files)} file(s) missing ({_first(missing_files)})')
    if problems:
        raise FileNotFoundError(f'{owner}: missing data: ' + '; '.join(problems))


def _first(items: list[str], limit: int = 3) -> str:
    return ', '.join(items[:limit]) + (', ...' if len(items) > limit else '')


def open_dataset(
    opt: dict, required: tuple[str, ...], optional: tuple[str, ...], owner: str, allow_video: bool = False
) -> tuple[VSRDBReader, dict[str, list[str]]]:
    """Check a BasicSR dataset's ``dataroot_<stream>`` options, build its reader and list its clips (from ``lq``).

    Args:
        allow_video (bool): Whether streams may be folders of videos (test datasets, read in order). Default: False.

    Raises:
        ValueError: Naming the first missing required ``dataroot_<stream>`` option, or a video folder when
            ``allow_video`` is False.
        FileNotFoundError: Listing every configured folder (or LMDB) that does not exist.
    """
    roots = {}
    for stream in (*required, *optional):
        root = opt.get(f'dataroot_{stream}')
        if root is None and stream in required:
            raise ValueError(f"{owner}: option 'dataroot_{stream}' is required")
        if root is not None:
            roots[stream] = str(root)
    io_backend = opt.get('io_backend', {'type': 'disk'})
    check_dataset_files(roots, {}, io_backend.get('type'), opt.get('filename_ext', 'png'), owner)  # the folders
    reader = VSRDBReader(roots, io_backend, opt.get('filename_ext', 'png'), owner)
    if not allow_video and reader.backend == 'disk':
        refuse_video_roots(roots, owner)
    return reader, list_clips({**opt, 'io_backend': io_backend}, roots['lq'], owner)


def select_clips(
    clips: dict[str, list[str]],
    owner: str,
    root: str,
    only: Iterable | None = None,
    exclude: Iterable | None = None,
    min_frames: int = 0,
    warn: Callable[[str], Any] | None = None,
) -> dict[str, list[str]]:
    """Restrict listed clips: to ``only`` (in that order), without ``exclude``, with at least ``min_frames`` frames.

    Args:
        clips (dict[str, list[str]]): Clip name -> frame stems (from :func:`list_clips`).
        owner (str): Dataset class name for messages.
        root (str): Where the clips were listed from, for messages.
        only (Iterable | None): Option ``clips``: keep these clips, which must exist. Default: all.
        exclude (Iterable | None): Option ``exclude_clips``. Default: none.
        min_frames (int): Shorter clips are left out, with a warning through ``warn``. Default: 0.
        warn (Callable | None): Receives the warning about short clips. Default: none.

    Returns:
        dict[str, list[str]]: The selected clips.

    Raises:
        ValueError: If ``only`` names a clip that does not exist, or no clip is left.
    """
    if only is not None:
        if isinstance(only, str):
            only = [only]
        for clip in only:
            if not isinstance(clip, str) and str(clip) not in clips:
                padded = [c for c in clips if c.lstrip('0') == str(clip).lstrip('0') and c.isdigit()]
                hint = f" (e.g. '{padded[0]}')" if padded else ''
                raise ValueError(
                    f"{owner}: option 'clips': {clip!r} was read as a number, not a clip name; write clip names "
                    f"as quoted strings{hint}, e.g. clips: ['000'] in YAML or --cfg-options \"clips=['000']\""
                )
        wanted = [str(c) for c in only]
        missing = [c for c in wanted if c not in clips]
        if missing:
            raise ValueError(
                f"{owner}: option 'clips' names clips not in the dataset under '{root}': {missing}"
                f'{suggest(missing[0], clips)}'
            )
        clips = {c: clips[c] for c in wanted}
    excluded = {str(c) for c in exclude or []}
    clips = {c: stems for c, stems in clips.items() if c not in excluded}
    short = [c for c, stems in clips.items() if len(stems) < min_frames]
    if short and warn is not None:
        warn(f'{owner}: clips {short} have fewer than {min_frames} frames (num_frame); skipped')
    clips = {c: stems for c, stems in clips.items() if c not in short}
    if not clips:
        at_least = f' with at least {min_frames} frames' if min_frames > 1 else ''
        raise ValueError(f"{owner}: no clip{at_least} under '{root}' (after the clip options)")
    return clips
