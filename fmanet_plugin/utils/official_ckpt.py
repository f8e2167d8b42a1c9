"""Conversion of the authors' released FMA-Net checkpoints to the plugin's parameter names.

The released ``FMANet`` names Net_D ``degradation_learning_network`` and Net_R ``restoration_network``;
its training script saves them separately as ``model_D_state_dict`` / ``model_R_state_dict``. The
plugin renames modules to say what they are (e.g. ``r_conv`` -> ``kernel_head``); the tensors are the
same. ``to_rgb`` flips the channel-facing weights so the model takes and returns RGB (BasicSR's
convention) instead of the BGR the released model was trained on.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch

NET_D_PREFIX = 'degradation_learning_network.'
NET_R_PREFIX = 'restoration_network.'

# (pattern, replacement) applied in order to a key without its network prefix.
_COMMON_RULES = [
    (r'^feature_extractor\.0\.', 'conv_first.'),
    (r'^feature_extractor\.2\.RDBs\.(\d+)\.', r'rrdb.rdbs.\1.'),
    (r'^feature_extractor\.2\.conv\.0\.', 'rrdb.fusion.'),
    (r'^feature_extractor\.2\.conv\.1\.', 'rrdb.conv.'),
    (r'^FRMA_blocks\.', 'frma_blocks.'),
    (r'\.rdb_KD\.', '.rdb_kernel.'),
    (r'\.conv_KD\.', '.fuse_kernel.'),
    (r'\.conv_Fw\.', '.fuse_warped.'),
    (r'\.conv_f\.', '.flow_update.'),
    (r'\.layer\.(\d+)\.conv\.', r'.dense_layers.\1.'),
    (r'(?<![a-z])(rdbs\.\d+|rdb|rdb_kernel)\.conv\.', r'\1.fusion.'),
    (r'\.multi_attn_block\.', '.attn_blocks.'),
    (r'\.norm1\.body\.', '.norm_co.'),
    (r'\.norm2\.body\.', '.norm_ffn_co.'),
    (r'\.norm3\.body\.', '.norm_da.'),
    (r'\.norm4\.body\.', '.norm_ffn_da.'),
    (r'\.ffn1\.', '.ffn_co.'),
    (r'\.ffn2\.', '.ffn_da.'),
    (r'_attn\.q\.', '_attn.to_q.'),
    (r'_attn\.q_dwconv\.', '_attn.to_q_dw.'),
    (r'_attn\.kv_conv\.', '_attn.to_kv.'),
    (r'_attn\.kv_dwconv\.', '_attn.to_kv_dw.'),
    (r'_attn\.project_out\.', '_attn.proj_out.'),
    (r'^a_conv\.', 'anchor_head.'),
]
_NET_D_RULES = [(r'^f_conv\.', 'image_flow_head.'), (r'^d_conv\.', 'kernel_head.')]
_NET_R_RULES = [
    (r'^f_conv1\.', 'flow_refine.'),
    (r'^f_conv2\.', 'image_flow_head.'),
    (r'^f_conv3\.', 'image_flow_refine.'),
    (r'^d_conv\.', 'kernel_embed.'),
    (r'^r_conv\.', 'kernel_head.'),
    (r'^res_conv1\.', 'res_conv_in.'),
    (r'^res_conv2\.', 'res_conv_out.'),
    (r'^upsample\.', 'upsampler.'),
]

# Image-facing weights flipped by ``to_rgb``: key -> offsets (from the end when negative) of the
# image-channel groups among the input channels. Net_R's image-flow refinement sees the warped frames
# and the centre frame as its last two image-channel groups.
RGB_INPUT_GROUPS = {
    'net_d.conv_first.weight': (0,),
    'net_r.conv_first.weight': (0,),
    'net_r.image_flow_refine.0.weight': (-2, -1),
}
# Keys whose output channels are image channels (anchors and the residual branch).
RGB_OUTPUT_KEYS = ('net_d.anchor_head.2.', 'net_r.anchor_head.2.', 'net_r.res_conv_out.')


def _rename(key: str, rules: list) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def official_key_to_plugin(key: str) -> str:
    """Map one released parameter name (with its network prefix) to the plugin's name.

    Raises:
        KeyError: If the key belongs to neither released network.
    """
    if key.startswith(NET_D_PREFIX):
        return 'net_d.' + _rename(key[len(NET_D_PREFIX) :], _COMMON_RULES + _NET_D_RULES)
    if key.startswith(NET_R_PREFIX):
        return 'net_r.' + _rename(key[len(NET_R_PREFIX) :], _COMMON_RULES + _NET_R_RULES)
    raise KeyError(
        f'{key!r} is not a parameter of the released FMANet (expected prefix {NET_D_PREFIX!r} or {NET_R_PREFIX!r})'
    )


def convert_official_state_dict(official: Mapping[str, torch.Tensor], to_rgb: bool = False) -> OrderedDict:
    """Rename a released ``FMANet`` state dict (``degradation_learning_network.*``/``restoration_network.*``).

    Args:
        official (Mapping[str, Tensor]): The released state dict (a ``module.`` prefix is stripped).
        to_rgb (bool): Flip the image-facing channels so the model works on RGB. Default: False.

    Returns:
        OrderedDict: State dict for :class:`fmanet_plugin.archs.fmanet_arch.FMANet`.
    """
    converted = OrderedDict()
    for key, value in official.items():
        key = key[len('module.') :] if key.startswith('module.') else key
        converted[official_key_to_plugin(key)] = value.detach().clone()
    if to_rgb:
        flip_image_channels(converted)
    return converted


def flip_image_channels(state_dict: dict, in_channels: int = 3) -> dict:
    """Swap BGR <-> RGB in the image-facing weights of a plugin state dict, in place.

    Args:
        state_dict (dict): Plugin state dict (stage 1 or 2).
        in_channels (int): Image channels. Default: 3.

    Returns:
        dict: The same dict.
    """
    order = torch.arange(in_channels - 1, -1, -1)
    for key, groups in RGB_INPUT_GROUPS.items():
        if key in state_dict:
            weight = state_dict[key].clone()
            for group in groups:
                start = group * in_channels if group >= 0 else weight.shape[1] + group * in_channels
                weight[:, start : start + in_channels] = weight[:, start + order]
            state_dict[key] = weight
    for key, value in state_dict.items():
        if key.startswith(RGB_OUTPUT_KEYS):
            state_dict[key] = value[order].clone()
    return state_dict


def load_official_files(paths: list[str]) -> dict:
    """Read released checkpoints into one ``FMANet`` state dict with the released names.

    Accepts the trainer's files (``model_D_*.pt`` with ``model_D_state_dict``, ``model_R_*.pt`` with
    ``model_R_state_dict``; Net_D alone gives a stage-1 model) or one state dict of the whole released
    ``FMANet`` (optionally under a ``state_dict`` key).

    Raises:
        ValueError: If a file holds none of these.
    """
    merged = {}
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'released checkpoint not found: {path}')
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
        except Exception as err:  # torch raises anything from KeyError to RuntimeError for a non-checkpoint
            reason = (str(err).strip().splitlines() or [''])[0][:120]
            raise ValueError(f'{path}: not a PyTorch checkpoint ({type(err).__name__}: {reason})') from None
        if not isinstance(ckpt, Mapping):
            raise ValueError(f'{path}: expected a dict checkpoint, got {type(ckpt).__name__}')
        if 'model_D_state_dict' in ckpt:
            merged.update({NET_D_PREFIX + _strip(k): v for k, v in ckpt['model_D_state_dict'].items()})
        if 'model_R_state_dict' in ckpt:
            merged.update({NET_R_PREFIX + _strip(k): v for k, v in ckpt['model_R_state_dict'].items()})
        if 'model_D_state_dict' in ckpt or 'model_R_state_dict' in ckpt:
            continue
        state = ckpt.get('state_dict', ckpt)
        keys = [_strip(k) for k in state]
        if not any(k.startswith((NET_D_PREFIX, NET_R_PREFIX)) for k in keys):
            raise ValueError(
                f'{path}: expected model_D_state_dict / model_R_state_dict or a released FMANet state dict '
                f'(keys starting with {NET_D_PREFIX!r} / {NET_R_PREFIX!r}); found keys like {keys[:3]}'
            )
        merged.update({_strip(k): v for k, v in state.items()})
    return merged


def _strip(key: str) -> str:
    return key[len('module.') :] if key.startswith('module.') else key


def check_against_model(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raise a ValueError listing missing, unexpected and mis-shaped keys of ``state_dict`` for ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}'
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or extra or shapes:
        lines = []
        for title, items in (('missing', missing), ('unexpected', extra), ('mis-shaped', shapes)):
            if items:
                lines.append(f'{title} ({len(items)}): ' + ', '.join(items))
        raise ValueError('checkpoint does not match the FMANet configuration:\n' + '\n'.join(lines))
