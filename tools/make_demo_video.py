"""Make a short sharp high-frame-rate "footage" clip from real photographs, to try tools/prepare_vsrdb.py.

Shots joined by hard cuts: a virtual camera glides (with a slight zoom) over each of ``--photos`` in turn (by
default matplotlib's bundled photograph of Grace Hopper, then scikit-image's "coffee"; ``--photos
grace_hopper,grass`` uses only photographs that ``tools/make_demo_data.py`` never trains on). Frames are rendered with
``cv2.warpAffine`` at ``--fps`` (120 by default: fast enough for REDS-style blur by averaging 5 frames),
encoded as H.264 with a 440 Hz AAC tone as the sound track (PyAV). Without real footage at hand this stands in
for a phone video; with real footage, skip this step.

Example::

    python tools/make_demo_video.py --out datasets/footage/demo_120fps.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.video_io import write_video_with_tone

import cv2
import matplotlib.cbook
import numpy as np
from skimage import data as skdata


def _grace_hopper() -> np.ndarray:
    with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
        return cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)


def _bgr(rgb_or_grey: np.ndarray) -> np.ndarray:
    if rgb_or_grey.ndim == 2:
        return cv2.cvtColor(rgb_or_grey, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(rgb_or_grey, cv2.COLOR_RGB2BGR)


# Photographs bundled with matplotlib / scikit-image (no download), uint8 BGR.
PHOTOS = {
    'grace_hopper': _grace_hopper,
    'coffee': lambda: _bgr(skdata.coffee()),
    'grass': lambda: _bgr(skdata.grass()),
    'gravel': lambda: _bgr(skdata.gravel()),
    'retina': lambda: _bgr(skdata.retina()),
}


def photographs(names: list[str]) -> list[np.ndarray]:
    """The source photographs ``names`` (keys of ``PHOTOS``) as uint8 BGR."""
    return [PHOTOS[name]() for name in names]


def render_shot(photo: np.ndarray, num: int, size: tuple[int, int], speed: float, seed: int) -> list[np.ndarray]:
    """``num`` frames (h, w) = ``size`` of a camera moving at about ``speed`` source pixels per frame."""
    rng = np.random.default_rng(seed)
    h, w = size
    zoom0 = 0.85 * min(photo.shape[0] / h, photo.shape[1] / w) / 1.3  # view smaller than the photo
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.cos(angle), np.sin(angle)])
    travel = velocity * num
    centre0 = np.array([photo.shape[1], photo.shape[0]]) / 2 - travel / 2
    frames = []
    for k in range(num):
        t = k / max(num - 1, 1)
        zoom = zoom0 * (1 + 0.08 * np.sin(np.pi * t))
        wobble = 3 * np.array([np.sin(2 * np.pi * t), np.cos(3 * np.pi * t)])
        centre = centre0 + velocity * k + wobble
        offset = centre - zoom * np.array([(w - 1) / 2, (h - 1) / 2])
        matrix = np.array([[zoom, 0, offset[0]], [0, zoom, offset[1]]])
        flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        frames.append(cv2.warpAffine(photo, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101))
    return frames


def write_video(path: Path, shots: list[list[np.ndarray]], fps: int) -> None:
    """H.264 (CRF 12) video of the frames plus an AAC tone of the same length, written atomically."""
    write_video_with_tone(path, (frame for shot in shots for frame in shot), fps, crf=12)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='datasets/footage/demo_120fps.mp4', help='output .mp4')
    parser.add_argument('--fps', type=int, default=120, help='frame rate')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of each shot')
    parser.add_argument('--height', type=int, default=192, help='frame height')
    parser.add_argument('--width', type=int, default=320, help='frame width')
    parser.add_argument('--speed', type=float, default=2.5, help='camera speed in photo pixels per frame')
    parser.add_argument(
        '--photos', default='grace_hopper,coffee', help=f'comma-separated, one shot each, from {", ".join(PHOTOS)}'
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.photos.split(',') if n.strip()]
    unknown = [n for n in names if n not in PHOTOS]
    if unknown or not names:
        parser.error(f'--photos: unknown {unknown or "(none given)"}; choose from {", ".join(PHOTOS)}')
    num = round(args.seconds * args.fps)
    shots = [
        render_shot(photo, num, (args.height, args.width), args.speed, seed)
        for seed, photo in enumerate(photographs(names))
    ]
    write_video(Path(args.out), shots, args.fps)
    size = f'{args.width}x{args.height}'
    print(f'wrote {args.out}: {len(shots)} shots x {num} frames, {size} at {args.fps} fps, with audio')
    return Path(args.out)


if __name__ == '__main__':
    main_entry(main)
