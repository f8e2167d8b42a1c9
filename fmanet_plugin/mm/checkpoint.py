"""Loading mmengine checkpoints on torch >= 2.6 (weights-only ``torch.load``); FMA-Net weights from either toolbox.

mmengine's Runner stores its ``MessageHub`` state in every checkpoint: ``HistoryBuffer`` objects whose pickled
state includes their statistics *functions* (``getattr(HistoryBuffer, 'mean')``), plus numpy arrays and scalars.
torch's default weights-only unpickler refuses them, so ``--resume`` and ``load_from`` fail. Allowing ``getattr``
would open the unpickler to arbitrary method calls, so instead :func:`allow_mmengine_checkpoints`

* pickles a ``HistoryBuffer`` as a constructor call on its data (``HistoryBuffer(logs, counts, max_length)``;
  the statistics methods are class-level and come back with the class), and
* allowlists exactly that constructor and the numpy array/scalar reconstructors.

Checkpoints written this way load with ``weights_only=True``; everything else stays refused.
"""

from __future__ import annotations

import copyreg

from fmanet_plugin.mm.strict_loading import check_fits
from fmanet_plugin.utils.checkpoint import read_checkpoint, select_state_dict, sub_state_dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray


def _reduce_history_buffer(buffer: HistoryBuffer) -> tuple:
    logs, counts = buffer.data
    return HistoryBuffer, (logs, counts, buffer.max_length)


def mmengine_checkpoint_globals() -> list:
    """The classes and functions a Runner checkpoint needs beyond torch's defaults (numeric numpy dtypes only)."""
    dtypes = [type(np.dtype(t)) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, *dtypes]


def allow_mmengine_checkpoints() -> None:
    """Save ``HistoryBuffer`` without functions and allow weights-only loading of Runner checkpoints."""
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def load_network_weights(network: nn.Module, path: str, prefix: str = '') -> None:
    """Load ``network`` (strict) from an FMA-Net checkpoint of either toolbox.

    Args:
        network (nn.Module): An ``FMANet`` (``prefix=''``) or one of its sub-networks (``prefix='net_d.'``).
        path (str): An mmengine checkpoint (``state_dict`` with ``generator.*`` keys) or a BasicSR one
            with the ``FMANet`` keys, e.g. a converted released checkpoint; entry chosen by
            :func:`fmanet_plugin.utils.checkpoint.select_state_dict`).
        prefix (str): The network's key prefix inside an ``FMANet`` state dict.
    """
    checkpoint = read_checkpoint(path)
    if 'state_dict' in checkpoint:
        weights, field = sub_state_dict(checkpoint['state_dict'], 'generator.' + prefix), 'state_dict'
    else:
        state, field = select_state_dict(checkpoint, path)
        weights = sub_state_dict(state, prefix)
    if weights:
        check_fits(network, weights, f'{path} ({field}, {prefix or "FMANet"} weights)')
        network.load_state_dict(weights, strict=True)
        print_log(f'Loaded {prefix.rstrip(".") or "FMANet"} weights from {path} ({field}).', logger='current')
        return
    raise ValueError(
        f'{path} holds no {prefix.rstrip(".") or "FMANet"} weights: expected an mmengine checkpoint (state_dict with '
        f'generator.{prefix}* keys) or a BasicSR one (params / params_ema with {prefix}* keys)'
    )
