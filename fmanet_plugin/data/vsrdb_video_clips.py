"""VSRDB streams stored as video files: ``<root>/<clip>.<ext>`` (:data:`VIDEO_EXTENSIONS`), one clip per video,
frames named ``%08d`` by their 0-based index (as :class:`~fmanet_plugin.utils.frame_io.FrameSource` names them).

Listing, checks against the clip list, and the refusal of training datasets (which read random windows; a video
is decoded from its start). Decoding is :class:`~fmanet_plugin.data.vsrdb_reader.VSRDBReader`'s.
"""

from __future__ import annotations

from pathlib import Path

from fmanet_plugin.utils.video_io import count_video_frames, is_video_path


def list_videos(root: str | Path, owner: str) -> dict[str, Path]:
    """The video files directly under ``root`` (hidden files, e.g. half-written outputs, are skipped).

    Args:
        root (str | Path): A stream folder.
        owner (str): Dataset class name for messages.

    Returns:
        dict[str, Path]: Clip name (file stem) -> video file, sorted by name; empty if ``root`` holds no video
        (or is not a folder).

    Raises:
        ValueError: If two videos share a stem, or ``root`` also holds sub-folders (clips of frames).
    """
    root_path = Path(root)
    if not root_path.is_dir():
        return {}
    entries = sorted(p for p in root_path.iterdir() if not p.name.startswith('.'))
    videos: dict[str, Path] = {}
    for path in entries:
        if path.is_file() and is_video_path(path):
            if path.stem in videos:
                raise ValueError(
                    f"{owner}: '{root}' holds two videos of clip '{path.stem}': {videos[path.stem]} and {path}"
                )
            videos[path.stem] = path
    folders = [p.name for p in entries if p.is_dir()]
    if videos and folders:
        raise ValueError(
            f"{owner}: '{root}' holds both video files and sub-folders ({', '.join(folders[:3])}); a stream "
            'folder holds either one video per clip or one folder of frames per clip'
        )
    return videos


def video_frame_stems(num_frames: int) -> list[str]:
    """The frame names of a clip read from a video: ``%08d`` of the 0-based index (as FrameSource names them)."""
    return [f'{i:08d}' for i in range(num_frames)]


def check_video_stream(
    stream: str, videos: dict[str, Path], clips: dict[str, list[str]], roots: dict[str, str], owner: str
) -> list[str]:
    """Problems of a stream stored as videos: missing clips (returned) and frame counts or names that differ from
    the clip listing (raised at once, naming both sides)."""
    missing = [clip for clip in clips if clip not in videos]
    for clip, stems in clips.items():
        if clip not in videos:
            continue
        count = count_video_frames(videos[clip])
        if stems == video_frame_stems(count):
            continue
        lq_videos = list_videos(roots['lq'], owner) if stream != 'lq' and 'lq' in roots else {}
        listed = f"LR clip '{lq_videos.get(clip, Path(roots.get('lq', ''), clip))}'" if stream != 'lq' else 'clip list'
        if count != len(stems):
            raise ValueError(
                f"{owner}: clip '{clip}': the {listed} has {len(stems)} frames but the dataroot_{stream} video "
                f"'{videos[clip]}' has {count}"
            )
        raise ValueError(
            f"{owner}: clip '{clip}': the {listed} names its frames {stems[0]}..{stems[-1]}, but the frames of the "
            f"dataroot_{stream} video '{videos[clip]}' are named by index, {video_frame_stems(1)[0]} first"
        )
    if missing:
        first = ', '.join(missing[:3])
        return [f"dataroot_{stream} '{roots[stream]}': {len(missing)} clip video(s) missing ({first})"]
    return []


def refuse_video_roots(roots: dict[str, str], owner: str) -> None:
    """Raise a ValueError naming the first stream in ``roots`` stored as videos (training datasets: they read
    random windows, and a video is decoded from its start)."""
    for stream, root in roots.items():
        if stream != 'flow' and list_videos(root, owner):
            raise ValueError(
                f"{owner}: option 'dataroot_{stream}' = '{root}' is a folder of videos; training reads random "
                'windows, so it needs frame folders or an LMDB (tools/prepare_vsrdb.py writes them)'
            )
