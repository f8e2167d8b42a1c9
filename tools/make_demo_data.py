"""Synthesise a small VSRDB dataset (REDS layout) from real photographs bundled with scikit-image and matplotlib.

Each clip is a virtual camera gliding over one photograph, at the photograph's own resolution: a pan in a
random direction at 2-8 HR pixels per frame (0.5-2 LR pixels) with acceleration, a slow rotation and zoom (rendered with
``cv2.warpAffine``). As in REDS, a blurry frame is the average of many sharp sub-frames over the exposure
(a random 50-100 % of the frame interval per clip), so the blur follows the motion. LR frames are
MATLAB-style bicubic x``scale`` downsamplings (basicsr's ``imresize``); the flow from each centre frame to
each neighbour follows exactly from the known camera motion. Training clips and validation clips come from
different photographs (``TRAIN_PHOTOS`` / ``VAL_PHOTOS``), so validation is on footage never trained on.
Layout under ``--out``::

    train_blur_bicubic/X4/<clip>/<frame>.png   blurry LR (input)
    train_sharp/<clip>/<frame>.png             sharp HR (GT)
    train_sharp_bicubic/X4/<clip>/<frame>.png  sharp LR (temporal-anchor target, RAFT input)
    train_flow/<clip>/<centre>_<neighbour>.npy float32 (h, w, 2) LR flow centre -> neighbour (x, y)
    meta_info_train.txt, meta_info_val.txt     '<clip> <num_frames> (H,W,3)' (validation clips last)
    sources.txt                                '<clip> <photograph> <split>' per clip

The build happens in a hidden temporary folder that is renamed to ``--out`` at the end.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import fmanet_plugin  # noqa: F401  (basicsr compat shim before importing basicsr)
from fmanet_plugin.utils.atomic_io import partial_directory, publish_directory
from fmanet_plugin.utils.errors import main_entry

import cv2
import numpy as np
from basicsr.utils import get_root_logger, imwrite
from basicsr.utils.matlab_functions import imresize
from matplotlib import cbook
from skimage import data as skdata


def _grace_hopper() -> np.ndarray:
    path = cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# Photographs at their native resolution (RGB uint8; grey ones are replicated to three channels).
TRAIN_PHOTOS = {
    'astronaut': skdata.astronaut,
    'coffee': skdata.coffee,
    'chelsea': skdata.chelsea,
    'rocket': skdata.rocket,
    'motorcycle': lambda: skdata.stereo_motorcycle()[0],
    'immunohistochemistry': skdata.immunohistochemistry,
    'brick': skdata.brick,
    'camera': skdata.camera,
}
VAL_PHOTOS = {'grace_hopper': _grace_hopper}  # never used for training clips


class CameraPath:
    """Smooth virtual camera over a source image: centre ``c(t)``, zoom ``z(t)``, rotation ``a(t)`` at time t.

    HR pixel ``P`` (x, y) of the frame at time ``t`` shows the source point ``c(t) + z(t) R(a(t)) (P - p_mid)``.
    Time is in frame intervals; ``times`` are every (sub-)frame time the clip renders.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        hr_hw: tuple[int, int],
        num_frames: int,
        speed: tuple[float, float],
    ):
        h, w = hr_hw
        self.p_mid = np.array([(w - 1) / 2, (h - 1) / 2])
        angle = rng.uniform(0, 2 * np.pi)
        self.velocity = rng.uniform(*speed) * np.array([np.cos(angle), np.sin(angle)])
        self.accel = rng.uniform(-1.0, 1.0, size=2)
        self.zoom_rate = rng.uniform(-0.1, 0.1) / max(num_frames, 8)  # at most +-5 % from the middle frame
        self.spin = rng.uniform(-0.01, 0.01)  # rad per frame
        self.t_mid = (num_frames - 1) / 2
        self.start = np.zeros(2)
        self.shift_range = self.half = np.zeros(2)

    def cover(self, times: np.ndarray) -> None:
        """Record how far the views at ``times`` reach (needed by :meth:`source_size_needed` and :meth:`place`)."""
        shifts = np.stack([self._shift(t) for t in times])
        self.shift_range = shifts.min(0), shifts.max(0)
        corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * self.p_mid
        reach = [np.abs(corners @ self._matrix(t)[:, :2].T).max(0) for t in times]
        self.half = np.max(reach, axis=0) + 4  # view half-size plus interpolation margin

    def source_size_needed(self) -> tuple[int, int]:
        """Smallest source (h, w) that holds every view along the path."""
        x, y = np.ceil(self.shift_range[1] - self.shift_range[0] + 2 * self.half + 2).astype(int)
        return int(y), int(x)

    def place(self, rng: np.random.Generator, src_hw: tuple[int, int]) -> None:
        """Pick a random start so that the whole path stays inside a source of size ``src_hw``."""
        low = self.half - self.shift_range[0]
        high = np.array([src_hw[1], src_hw[0]]) - 1 - self.half - self.shift_range[1]
        if np.any(low > high):
            raise ValueError(f'source {src_hw} too small for the camera path (needs {self.source_size_needed()})')
        self.start = rng.uniform(low, high)

    def _shift(self, t: float) -> np.ndarray:
        return self.velocity * t + 0.5 * self.accel * t**2

    def _matrix(self, t: float) -> np.ndarray:
        """2x2 linear part ``z(t) R(a(t))`` of the view -> source map."""
        z, a = 1.0 + self.zoom_rate * (t - self.t_mid), self.spin * (t - self.t_mid)
        return z * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    def to_source(self, points: np.ndarray, t: float) -> np.ndarray:
        """Source coordinates (..., 2) of HR frame points (..., 2) (x, y) at time ``t``."""
        return self.start + self._shift(t) + (points - self.p_mid) @ self._matrix(t).T

    def from_source(self, points: np.ndarray, t: float) -> np.ndarray:
        """HR frame coordinates at time ``t`` of source points (inverse of :meth:`to_source`)."""
        return self.p_mid + (points - self.start - self._shift(t)) @ np.linalg.inv(self._matrix(t)).T

    def render(self, source: np.ndarray, t: float, hr_hw: tuple[int, int]) -> np.ndarray:
        """The HR view (h, w, 3) float32 of ``source`` at time ``t``."""
        linear = self._matrix(t)
        matrix = np.concatenate([linear, self.to_source(self.p_mid, t)[:, None] - linear @ self.p_mid[:, None]], 1)
        flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(source, matrix, (hr_hw[1], hr_hw[0]), flags=flags, borderMode=cv2.BORDER_REFLECT101)

    def lr_flow(self, t_centre: float, t_neighbour: float, lr_hw: tuple[int, int], scale: int) -> np.ndarray:
        """Exact LR flow (h, w, 2) (x, y) from the frame at ``t_centre`` to the frame at ``t_neighbour``."""
        offset = (scale - 1) / 2  # LR pixel q covers HR pixels around s*q + (s-1)/2 (MATLAB imresize)
        ys, xs = np.mgrid[0 : lr_hw[0], 0 : lr_hw[1]].astype(np.float64)
        lr = np.stack([xs, ys], -1)
        hr_neighbour = self.from_source(self.to_source(scale * lr + offset, t_centre), t_neighbour)
        return ((hr_neighbour - offset) / scale - lr).astype(np.float32)


def _load_source(photo: np.ndarray, min_hw: tuple[int, int]) -> np.ndarray:
    """``photo`` as RGB float32 at its native resolution, enlarged (cubic) only if smaller than ``min_hw``."""
    img = photo if photo.ndim == 3 else np.repeat(photo[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    factor = max(1.0, min_hw[0] / img.shape[0], min_hw[1] / img.shape[1])
    if factor > 1:
        size = (max(round(img.shape[1] * factor), min_hw[1]), max(round(img.shape[0] * factor), min_hw[0]))
        img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    return img


def _to_uint8_bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.round(img * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def _write_clip(root: Path, clip: str, photo: np.ndarray, args: argparse.Namespace, seed: int) -> None:
    hr_hw = (args.height, args.width)
    lr_hw = (args.height // args.scale, args.width // args.scale)
    lr_folder = f'X{args.scale}'
    rng = np.random.default_rng(seed)
    camera = CameraPath(rng, hr_hw, args.num_frames, (args.min_speed, args.max_speed))
    exposure = np.linspace(-0.5, 0.5, args.subframes) * rng.uniform(0.5, 1.0) * args.exposure
    camera.cover(np.concatenate([k + exposure for k in range(args.num_frames)]))
    source = _load_source(photo, min_hw=camera.source_size_needed())
    camera.place(rng, source.shape[:2])
    for k in range(args.num_frames):
        name = f'{k:08d}.png'
        sharp = camera.render(source, k, hr_hw)
        blurry = np.mean([camera.render(source, k + dt, hr_hw) for dt in exposure], axis=0)
        imwrite(_to_uint8_bgr(sharp), str(root / 'train_sharp' / clip / name))
        imwrite(
            _to_uint8_bgr(imresize(sharp, 1 / args.scale)), str(root / 'train_sharp_bicubic' / lr_folder / clip / name)
        )
        imwrite(
            _to_uint8_bgr(imresize(blurry, 1 / args.scale)), str(root / 'train_blur_bicubic' / lr_folder / clip / name)
        )
        flow_dir = root / 'train_flow' / clip
        flow_dir.mkdir(parents=True, exist_ok=True)
        for n in range(max(0, k - args.flow_radius), min(args.num_frames, k + args.flow_radius + 1)):
            if n != k:
                np.save(flow_dir / f'{k:08d}_{n:08d}.npy', camera.lr_flow(k, n, lr_hw, args.scale))


def clip_sources(num_clips: int, val_clips: int) -> list[tuple[str, str]]:
    """(photograph, split) of every clip: training clips cycle through ``TRAIN_PHOTOS``, the last ``val_clips``
    through ``VAL_PHOTOS``."""
    train, val = list(TRAIN_PHOTOS), list(VAL_PHOTOS)
    split = num_clips - val_clips
    return [(train[i % len(train)], 'train') for i in range(split)] + [
        (val[i % len(val)], 'val') for i in range(val_clips)
    ]


def make_demo_data(args: argparse.Namespace) -> Path:
    """Build the dataset described by the parsed command-line ``args``; returns the output folder."""
    out = Path(args.out)
    if out.exists() and not args.force:
        get_root_logger().info(f'{out} already exists; nothing to do (use --force to rebuild it)')
        return out
    if args.height % args.scale or args.width % args.scale:
        raise ValueError(f'--height/--width ({args.height}x{args.width}) must be multiples of --scale {args.scale}')
    if args.num_clips < 1:
        raise ValueError(f'--num-clips must be at least 1, got {args.num_clips}')
    if not 0 <= args.val_clips < args.num_clips:
        raise ValueError(f'--val-clips must be in 0..{args.num_clips - 1}, got {args.val_clips}')
    if not 0 <= args.min_speed <= args.max_speed:
        raise ValueError(f'--min-speed/--max-speed: need 0 <= min <= max, got {args.min_speed}, {args.max_speed}')
    photos = {**TRAIN_PHOTOS, **VAL_PHOTOS}
    tmp = partial_directory(out)
    try:
        meta, sources, loaded = [], [], {}
        for i, (photo, split) in enumerate(clip_sources(args.num_clips, args.val_clips)):
            if photo not in loaded:
                loaded[photo] = photos[photo]()
            _write_clip(tmp, f'{i:03d}', loaded[photo], args, seed=args.seed * 1000 + i)
            meta.append(f'{i:03d} {args.num_frames} ({args.height},{args.width},3)\n')
            sources.append(f'{i:03d} {photo} {split}\n')
        split = args.num_clips - args.val_clips
        (tmp / 'meta_info_train.txt').write_text(''.join(meta[:split]))
        (tmp / 'meta_info_val.txt').write_text(''.join(meta[split:]))
        (tmp / 'sources.txt').write_text(''.join(sources))
        publish_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    get_root_logger().info(
        f'wrote {args.num_clips} clips ({args.val_clips} held out) x {args.num_frames} frames '
        f'(HR {args.height}x{args.width}) to {out}'
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Synthesise a small deterministic VSRDB dataset (REDS layout, exact LR flow) from the real '
        'photographs bundled with scikit-image and matplotlib.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--out', default='datasets/demo', help='output folder (built atomically)')
    parser.add_argument('--num-clips', type=int, default=18, help='clips in all (training clips cycle the photos)')
    parser.add_argument(
        '--val-clips', type=int, default=2, help='last clips, held out in meta_info_val.txt, from unseen photographs'
    )
    parser.add_argument('--num-frames', type=int, default=8, help='frames per clip')
    parser.add_argument('--height', type=int, default=192, help='HR frame height')
    parser.add_argument('--width', type=int, default=256, help='HR frame width')
    parser.add_argument('--scale', type=int, default=4, help='downsampling factor (LR folder X<scale>)')
    parser.add_argument('--flow-radius', type=int, default=2, help='write flows to neighbours up to this far')
    parser.add_argument('--min-speed', type=float, default=2.0, help='slowest camera pan, HR pixels per frame')
    parser.add_argument('--max-speed', type=float, default=8.0, help='fastest camera pan, HR pixels per frame')
    parser.add_argument('--subframes', type=int, default=17, help='sharp sub-frames averaged per blurry frame')
    parser.add_argument('--exposure', type=float, default=1.0, help='longest exposure, in frame intervals')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the camera paths')
    parser.add_argument('--force', action='store_true', help='rebuild even if --out exists')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    get_root_logger().setLevel(logging.INFO)
    make_demo_data(parse_args(argv))


if __name__ == '__main__':
    main_entry(main)
