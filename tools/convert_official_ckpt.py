"""Convert the authors' released FMA-Net checkpoint into a BasicSR checkpoint (``{'params': state_dict}``).

Examples:
    # Both released files (Net_D and Net_R) -> one checkpoint for ``path.pretrain_network_g``
    python tools/convert_official_ckpt.py model_D_best.pt model_R_best.pt -o FMANet_REDS_rgb.pth --rgb
    # Stage-1 (Net_D only)
    python tools/convert_official_ckpt.py model_D_best.pt -o FMANet_stage1.pth --stage 1
    # One state dict of the released FMANet (e.g. the parity fixture's ``state_dict``)
    python tools/convert_official_ckpt.py fmanet_state_dict.pth -o FMANet.pth

``--rgb`` flips the image-facing weights: the released model was trained on BGR frames (OpenCV),
BasicSR feeds RGB. The converted model then maps RGB to RGB, and equals the released model's BGR
result with the channels flipped.
"""

from __future__ import annotations

import argparse

import fmanet_plugin  # noqa: F401  (registers FMANet, basicsr compat)
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.atomic_io import atomic_torch_save
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.official_ckpt import (
    NET_R_PREFIX,
    check_against_model,
    convert_official_state_dict,
    load_official_files,
)


def convert(paths: list[str], to_rgb: bool = False, stage: int | None = None, **network_opt) -> dict:
    """Convert released checkpoint file(s) into a plugin state dict and validate it against ``FMANet``.

    Args:
        paths (list[str]): Released files (see module docstring).
        to_rgb (bool): Make the model take and return RGB. Default: False.
        stage (int | None): 1 or 2; ``None`` infers it (stage 2 if Net_R weights are present).
        **network_opt: ``FMANet`` arguments when they differ from the released defaults.

    Returns:
        dict: The plugin state dict.

    Raises:
        ValueError: Missing, unexpected or mis-shaped keys, listed.
    """
    official = load_official_files(paths)
    has_net_r = any(k.startswith(NET_R_PREFIX) for k in official)
    if stage is None:
        stage = 2 if has_net_r else 1
    if stage == 1 and has_net_r:
        official = {k: v for k, v in official.items() if not k.startswith(NET_R_PREFIX)}
    state_dict = convert_official_state_dict(official, to_rgb=to_rgb)
    check_against_model(state_dict, FMANet(stage=stage, **network_opt))
    return state_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'inputs', nargs='+', help='released file(s): model_D_*.pt [model_R_*.pt] or one FMANet state dict'
    )
    parser.add_argument('-o', '--output', required=True, help='output BasicSR checkpoint (.pth)')
    parser.add_argument('--rgb', action='store_true', help='convert to RGB input/output (BasicSR pipelines)')
    parser.add_argument('--stage', type=int, choices=(1, 2), default=None, help='default: inferred from the inputs')
    parser.add_argument(
        '--network',
        default=None,
        help="FMANet arguments differing from the released defaults, as YAML/JSON, e.g. '{dim: 18, num_flow: 3}'",
    )
    args = parser.parse_args(argv)
    network_opt = {}
    if args.network:
        import yaml

        network_opt = yaml.safe_load(args.network) or {}
    state_dict = convert(args.inputs, to_rgb=args.rgb, stage=args.stage, **network_opt)  # errors: main_entry
    atomic_torch_save({'params': state_dict}, args.output)
    print(f'saved {len(state_dict)} tensors ({"RGB" if args.rgb else "BGR"}) to {args.output}')
    return 0


if __name__ == '__main__':
    main_entry(main)
