"""Generate RAFT pseudo-ground-truth flow (centre -> each neighbour) on the sharp LR frames.

Uses torchvision's RAFT with a local weights file (torchvision format or the original princeton-vl
``raft-small.pth`` / ``raft-things.pth``); nothing is downloaded. Output: the released layout
``<output>/<clip>/<centre>_<neighbour>.npy`` (float32 (h, w, 2), x then y, LR pixels; files written
atomically, existing ones skipped so a rerun resumes) or, for an ``--output`` ending with ``.lmdb``,
an LMDB built atomically (keys ``clip/<centre>_<neighbour>``, raw float32).

Example::

    python tools/generate_flow.py --input datasets/REDS/train_sharp_bicubic/X4 \\
        --output datasets/REDS/train_flow --weights raft-small.pth --radius 1
"""

from __future__ import annotations

import argparse
import logging

import fmanet_plugin  # noqa: F401  (basicsr compat shim before importing basicsr)
from fmanet_plugin.data.vsrdb_clips import list_clips
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.raft_flow import generate_flows, load_raft

import torch
from basicsr.utils import get_root_logger


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='RAFT pseudo-ground-truth flow from each centre frame to its neighbours (sharp LR frames).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--input', required=True, help='sharp LR frames: <input>/<clip>/<frame>.<ext>')
    parser.add_argument('--output', required=True, help='flow folder, or a path ending with .lmdb')
    parser.add_argument('--weights', required=True, help='local RAFT weights (torchvision or princeton-vl format)')
    parser.add_argument('--model', choices=['auto', 'small', 'large'], default='auto', help='RAFT variant')
    parser.add_argument('--radius', type=int, default=1, help='neighbours up to this far (N of T = 2N+1)')
    parser.add_argument('--meta-info-file', help="restrict to the clips of a '<clip> <num_frames> ...' file")
    parser.add_argument('--filename-tmpl', default='08d', help='frame name format used with --meta-info-file')
    parser.add_argument('--clips', nargs='+', help='restrict to these clips')
    parser.add_argument('--ext', default='png', help='frame file extension')
    parser.add_argument('--batch-size', type=int, default=8, help='frame pairs per RAFT call')
    parser.add_argument('--num-updates', type=int, default=12, help='RAFT recurrent flow updates')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', help='torch device')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing LMDB output')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, int]:
    args = parse_args(argv)
    get_root_logger().setLevel(logging.INFO)
    opt = {
        'meta_info_file': args.meta_info_file,
        'filename_tmpl': args.filename_tmpl,
        'filename_ext': args.ext,
        'io_backend': {'type': 'disk'},
    }
    clips = list_clips(opt, args.input, 'generate_flow')
    if args.clips:
        missing = sorted(set(args.clips) - set(clips))
        if missing:
            raise ValueError(f"--clips names clips not under '{args.input}': {missing}")
        clips = {c: clips[c] for c in args.clips}
    raft = load_raft(args.weights, args.model, args.device)
    return generate_flows(
        raft,
        clips,
        args.input,
        args.output,
        radius=args.radius,
        ext=args.ext,
        batch_size=args.batch_size,
        num_updates=args.num_updates,
        overwrite=args.overwrite,
    )


if __name__ == '__main__':
    main_entry(main)
