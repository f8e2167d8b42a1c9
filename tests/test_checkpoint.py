"""utils/checkpoint.py: which entry of a checkpoint is read, by the tools, the BasicSR model and the mm path."""

from __future__ import annotations

from fmanet_plugin.utils.checkpoint import load_weights, read_state_dict

import pytest
import torch
from torch import nn


def weights(value: float) -> dict:
    return {'weight': torch.full((2, 3), value), 'bias': torch.full((2,), value)}


@pytest.mark.parametrize(
    ('content', 'param_keys', 'expected_value', 'expected_key'),
    [
        ({'params': weights(1), 'params_ema': weights(2)}, None, 2, 'params_ema'),  # EMA first
        ({'params_ema': weights(2), 'params': weights(1)}, None, 2, 'params_ema'),  # whatever the file order
        ({'params': weights(1)}, None, 1, 'params'),
        (weights(3), None, 3, '<state dict>'),  # a bare state dict
        ({'params': weights(1), 'params_ema': weights(2)}, 'params', 1, 'params'),  # named explicitly
        ({'params': weights(1)}, ('params_ema', 'params'), 1, 'params'),  # basicsr's EMA fallback
    ],
)
def test_precedence(tmp_path, content, param_keys, expected_value, expected_key):
    path = tmp_path / 'ckpt.pth'
    torch.save(content, path)
    state, key = read_state_dict(str(path), param_keys)
    assert key == expected_key
    assert set(state) == {'weight', 'bias'} and all(bool((v == expected_value).all()) for v in state.values())


def test_module_prefix_is_removed_and_loading_is_strict(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save({'params': {f'module.{k}': v for k, v in weights(4).items()}}, path)
    layer = nn.Linear(3, 2)
    assert load_weights(layer, str(path)) == 'params'
    assert bool((layer.weight == 4).all())
    with pytest.raises(ValueError, match=r'ckpt\.pth \[params\] does not match the Linear'):
        load_weights(nn.Linear(4, 2), str(path))


def test_missing_entry_released_checkpoint_and_missing_file_are_named(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save({'params': weights(1)}, path)
    with pytest.raises(ValueError, match="no 'params_ema' entry"):
        read_state_dict(str(path), 'params_ema')
    released = tmp_path / 'released.pth'
    torch.save({'degradation_learning_network.conv.weight': torch.ones(1)}, released)
    with pytest.raises(ValueError, match='released FMA-Net checkpoint; convert it first'):
        read_state_dict(str(released))
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        read_state_dict(str(tmp_path / 'absent.pth'))
