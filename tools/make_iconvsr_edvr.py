"""Turn a trained EDVR checkpoint into the keyframe feature extractor IconVSR loads from ``network_g.edvr_path``.

Examples:
    # paper size: EDVR-M trained with options/baselines/edvr_m_wotsa.yml, then edvr_m.yml (TSA)
    python tools/make_iconvsr_edvr.py experiments/EDVR_M_VSRDB/models/net_g_600000.pth \\
        --iconvsr-opt options/baselines/iconvsr.yml --edvr-opt options/baselines/edvr_m.yml
    # demo size: options/baselines/demo_edvr_for_iconvsr.yml
    python tools/make_iconvsr_edvr.py experiments/demo_EDVR_for_IconVSR/models/net_g_latest.pth \\
        --iconvsr-opt options/baselines/demo_iconvsr.yml --edvr-opt options/baselines/demo_edvr_for_iconvsr.yml

basicsr's ``IconVSR(num_feat, temporal_padding, edvr_path=...)`` builds
``EDVRFeatureExtractor(2 * temporal_padding + 1, num_feat)``: the front of an EDVR with 3 input channels,
``num_feat`` channels, 5 extraction blocks, PCD alignment with 8 deformable groups, TSA fusion over
``2 * temporal_padding + 1`` frames, centre frame ``temporal_padding``, no pre-deblurring, LR input. It loads
``torch.load(edvr_path)['params']`` strictly, so the file must hold exactly those keys (``conv_first``,
``feature_extraction``, ``conv_l2_*``, ``conv_l3_*``, ``pcd_align``, ``fusion``; the names are EDVR's own). This
tool reads the EDVR checkpoint (``params_ema``, else ``params``; ``--param-key`` to choose), refuses an EDVR of
another configuration with one line naming the sizes that differ, drops EDVR's reconstruction and upsampling
layers and writes ``{'params': extractor_state_dict}`` atomically (default output: ``--out``, else
``experiments/pretrained_models/<iconvsr name>_edvr.pth``).

The configuration the extractor needs comes from ``--iconvsr-opt`` (its ``network_g.num_feat`` and
``temporal_padding``) or ``--num-feat`` / ``--temporal-padding`` (basicsr's defaults: 64, 2). Options that leave
no trace in the weights (``center_frame_idx``, ``hr_in``) are checked when ``--edvr-opt`` gives the EDVR's option
file.
"""

from __future__ import annotations

import argparse
import os.path as osp
from collections.abc import Mapping

import fmanet_plugin  # noqa: F401  (basicsr compat)
from fmanet_plugin.utils.atomic_io import atomic_torch_save
from fmanet_plugin.utils.checkpoint import read_state_dict, state_dict_mismatch
from fmanet_plugin.utils.errors import UserInputError, main_entry
from fmanet_plugin.utils.run_info import read_run_options

import torch
from basicsr.archs.basicvsr_arch import EDVRFeatureExtractor

# what EDVRFeatureExtractor hard-codes (basicsr 1.4.2); num_feat and num_frame come from IconVSR's arguments
EXTRACTOR_FIXED = {'num_in_ch': 3, 'num_extract_block': 5, 'deformable_groups': 8, 'with_tsa': True}
DEFAULT_NUM_FEAT, DEFAULT_TEMPORAL_PADDING = 64, 2  # IconVSR's defaults


def extractor_config(num_feat: int, temporal_padding: int) -> dict:
    """The EDVR configuration ``IconVSR(num_feat, temporal_padding=...)``'s extractor builds (EDVR's argument
    names)."""
    return {
        'num_feat': num_feat,
        'num_frame': 2 * temporal_padding + 1,
        **EXTRACTOR_FIXED,
        'with_predeblur': False,
    }


def infer_edvr_config(state: Mapping[str, torch.Tensor], path: str) -> dict:
    """The EDVR configuration a checkpoint's tensor sizes imply (EDVR's argument names).

    Raises:
        UserInputError: If the state dict is not an EDVR's.
    """
    with_predeblur = any(k.startswith('predeblur.') for k in state)
    first = state.get('predeblur.conv_first.weight' if with_predeblur else 'conv_first.weight')
    offset = state.get('pcd_align.dcn_pack.l1.conv_offset.weight')
    if first is None or offset is None:
        raise UserInputError(f'{path}: not an EDVR checkpoint (no conv_first / pcd_align.dcn_pack weights)')
    num_feat = first.shape[0]
    with_tsa = 'fusion.feat_fusion.weight' in state
    fusion = state.get('fusion.feat_fusion.weight' if with_tsa else 'fusion.weight')
    blocks = {k.split('.')[1] for k in state if k.startswith('feature_extraction.')}
    return {
        'num_feat': num_feat,
        'num_frame': fusion.shape[1] // num_feat if fusion is not None else None,
        'num_in_ch': first.shape[1],
        'num_extract_block': len(blocks),
        'deformable_groups': offset.shape[0] // (3 * offset.shape[2] * offset.shape[3]),  # offsets x 2 + mask
        'with_tsa': with_tsa,
        'with_predeblur': with_predeblur,
    }


def check_edvr_options(edvr_opt: dict, expected: dict, opt_path: str) -> None:
    """Check the EDVR option file's ``network_g`` against the extractor (including what leaves no trace in weights).

    Raises:
        UserInputError: Naming the options that differ.
    """
    net = edvr_opt['network_g']
    if net.get('type') != 'EDVR':
        raise UserInputError(f'{opt_path}: network_g.type is {net.get("type")!r}, expected EDVR')
    defaults = {'num_in_ch': 3, 'num_feat': 64, 'num_frame': 5, 'deformable_groups': 8, 'num_extract_block': 5}
    defaults.update(with_predeblur=False, with_tsa=True, hr_in=False)  # basicsr's EDVR defaults
    found = {k: net.get(k, defaults[k]) for k in (*expected, 'hr_in')}
    want = dict(expected, hr_in=False)
    centre = net.get('center_frame_idx')
    diffs = [f'{k} {found[k]} (expected {want[k]})' for k in want if found[k] != want[k]]
    if centre is not None and centre != expected['num_frame'] // 2:
        diffs.append(f'center_frame_idx {centre} (expected {expected["num_frame"] // 2} or ~)')
    if diffs:
        raise UserInputError(
            f"{opt_path}: network_g does not match IconVSR's EDVR feature extractor: {', '.join(diffs)}"
        )


def extract(ckpt_path: str, num_feat: int, temporal_padding: int, param_key: str | None = None) -> dict:
    """The ``EDVRFeatureExtractor`` state dict taken from an EDVR checkpoint.

    Args:
        ckpt_path (str): BasicSR checkpoint of a trained EDVR.
        num_feat (int): IconVSR's ``num_feat``.
        temporal_padding (int): IconVSR's ``temporal_padding``.
        param_key (str | None): Checkpoint entry; ``None``: ``params_ema``, else ``params``.

    Returns:
        dict[str, Tensor]: Exactly the extractor's keys, loaded strictly into a fresh extractor as a check.

    Raises:
        UserInputError: If the checkpoint's EDVR configuration differs from the extractor's (the sizes named).
    """
    state, entry = read_state_dict(ckpt_path, param_key)
    expected = extractor_config(num_feat, temporal_padding)
    found = infer_edvr_config(state, ckpt_path)
    diffs = [f'{k} {found[k]} (expected {v})' for k, v in expected.items() if found[k] != v]
    if diffs:
        raise UserInputError(
            f"{ckpt_path} [{entry}]: EDVR configuration does not match IconVSR's EDVR feature extractor "
            f'(num_feat {num_feat}, temporal_padding {temporal_padding}): {", ".join(diffs)}'
        )
    extractor = EDVRFeatureExtractor(expected['num_frame'], num_feat, None)
    wanted = extractor.state_dict()
    params = {k: state[k].detach().clone() for k in wanted if k in state}
    problem = state_dict_mismatch(wanted, params)
    if problem:  # sizes agreed above: only an unusual checkpoint gets here
        raise UserInputError(f"{ckpt_path} [{entry}]: does not fit IconVSR's EDVR feature extractor: {problem}")
    extractor.load_state_dict(params, strict=True)
    return params


def iconvsr_network(opt_path: str) -> tuple[str, int, int]:
    """Name, ``num_feat`` and ``temporal_padding`` of an IconVSR option file (basicsr's defaults where absent).

    Raises:
        UserInputError: If ``network_g`` is not an IconVSR.
    """
    opt = read_run_options(opt_path)
    net = opt['network_g']
    if 'IconVSR' not in str(net.get('type')):
        raise UserInputError(f'{opt_path}: network_g.type is {net.get("type")!r}, expected IconVSR (or a subclass)')
    return opt['name'], net.get('num_feat', DEFAULT_NUM_FEAT), net.get('temporal_padding', DEFAULT_TEMPORAL_PADDING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='BasicSR checkpoint of a trained EDVR (e.g. net_g_latest.pth)')
    parser.add_argument('--iconvsr-opt', help="IconVSR option file (its network_g's num_feat, temporal_padding)")
    parser.add_argument('--num-feat', type=int, help=f'IconVSR num_feat without --iconvsr-opt ({DEFAULT_NUM_FEAT})')
    parser.add_argument(
        '--temporal-padding',
        type=int,
        help=f'IconVSR temporal_padding without --iconvsr-opt ({DEFAULT_TEMPORAL_PADDING})',
    )
    parser.add_argument('--edvr-opt', help="the EDVR's option file: also checks center_frame_idx and hr_in")
    parser.add_argument('--param-key', help='checkpoint entry (default: params_ema, else params)')
    parser.add_argument('--out', help='output (default: experiments/pretrained_models/<IconVSR name>_edvr.pth)')
    args = parser.parse_args(argv)
    if args.iconvsr_opt and (args.num_feat is not None or args.temporal_padding is not None):
        parser.error('give --iconvsr-opt or --num-feat/--temporal-padding, not both')
    if args.iconvsr_opt:
        name, num_feat, temporal_padding = iconvsr_network(args.iconvsr_opt)
    else:
        name = 'IconVSR'
        num_feat = DEFAULT_NUM_FEAT if args.num_feat is None else args.num_feat
        temporal_padding = DEFAULT_TEMPORAL_PADDING if args.temporal_padding is None else args.temporal_padding
    if num_feat < 8 or num_feat % 8 or temporal_padding < 1:
        parser.error(f'num_feat must be a multiple of 8 (8 deformable groups) and temporal_padding >= 1, got '
                     f'{num_feat} and {temporal_padding}')  # fmt: skip
    if args.edvr_opt:
        check_edvr_options(read_run_options(args.edvr_opt), extractor_config(num_feat, temporal_padding), args.edvr_opt)
    params = extract(args.checkpoint, num_feat, temporal_padding, args.param_key)
    out = args.out or osp.join('experiments', 'pretrained_models', f'{name}_edvr.pth')
    atomic_torch_save({'params': params}, out)
    count = sum(v.numel() for v in params.values())
    print(
        f"wrote {out}: IconVSR's EDVR feature extractor (num_feat {num_feat}, {2 * temporal_padding + 1} frames; "
        f'{len(params)} tensors, {count / 1e6:.3f} M parameters) from {args.checkpoint}'
    )
    return 0


if __name__ == '__main__':
    main_entry(main)
