"""Shared fixtures: the released model's parity data and a small FMANet built from its configuration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.utils.official_ckpt import convert_official_state_dict

import pytest
import torch

DATA = Path(__file__).parent / 'data'

# The smallest valid FMANet (about 12k parameters), for end-to-end tests of tools and training loops.
TINY_NET = dict(
    dim=6,
    ds_kernel_size=4,
    us_kernel_size=3,
    num_rdb=1,
    growth_rate=4,
    num_dense_layer=1,
    num_flow=3,
    num_frma=1,
    num_attn_block=1,
    num_heads=1,
)

# Released argument names -> FMANet argument names.
RELEASED_ARGS = {
    'in_channels': 'in_channels',
    'dim': 'dim',
    'ds_kernel_size': 'ds_kernel_size',
    'us_kernel_size': 'us_kernel_size',
    'num_RDB': 'num_rdb',
    'growth_rate': 'growth_rate',
    'num_dense_layer': 'num_dense_layer',
    'num_flow': 'num_flow',
    'num_FRMA': 'num_frma',
    'num_transformer_block': 'num_attn_block',
    'num_heads': 'num_heads',
    'ffn_expansion_factor': 'ffn_expansion_factor',
    'bias': 'bias',
}

# Fixture output names (released code) -> FMANet output names.
RELEASED_OUTPUTS = {
    'output': 'output',
    'recon': 'recon',
    'hr_warp': 'hr_warp',
    'lr_warp': 'lr_warp',
    'image_flow': 'image_flow',
    'F_sharp_D': 'anchor_d',
    'F_sharp_R': 'anchor_r',
}


@pytest.fixture(scope='session')
def official():
    """The parity fixture produced with the authors' released code (see ../shared/SPEC.md)."""
    return torch.load(DATA / 'official_small.pt', map_location='cpu')


def network_opt(official: dict) -> dict:
    opt = {RELEASED_ARGS[k]: v for k, v in official['network'].items() if k in RELEASED_ARGS}
    opt.update(scale=official['train']['scale'], num_seq=official['train']['num_seq'])
    return opt


@pytest.fixture()
def small_model(official):
    """FMANet at the fixture's configuration with the fixture's weights (converted, BGR)."""
    model = FMANet(**network_opt(official))
    model.load_state_dict(convert_official_state_dict(official['state_dict']))
    return model


def to_btchw(tensor: torch.Tensor) -> torch.Tensor:
    """Fixture tensors are (b, c, t, h, w); the plugin's are (b, t, c, h, w)."""
    return tensor.transpose(1, 2) if tensor.dim() == 5 else tensor


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` by path (the tools are scripts, not a package; ``tools`` is not on ``sys.path``
    under a bare ``pytest``). Registered in ``sys.modules`` while it runs: dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', Path(__file__).resolve().parents[1] / 'tools' / f'{name}.py'
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
