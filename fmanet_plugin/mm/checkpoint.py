"""Loading mmengine checkpoints on torch >= 2.6 (weights-only ``torch.load``) and the stage-1 Net_D pick-up.

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

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from numpy._core import multiarray
from torch import nn


def _reduce_history_buffer(buffer: HistoryBuffer) -> tuple:
    logs, counts = buffer.data
    return HistoryBuffer, (logs, counts, buffer.max_length)


def mmengine_checkpoint_globals() -> list:
    """The classes and functions a Runner checkpoint needs beyond torch's defaults."""
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
    ]


def allow_mmengine_checkpoints() -> None:
    """Save ``HistoryBuffer`` without functions and allow weights-only loading of Runner checkpoints."""
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def load_stage1_net_d(net_d: nn.Module, path: str) -> None:
    """Load Net_D from a stage-1 checkpoint into ``net_d`` (strict).

    Args:
        net_d (nn.Module): The ``net_d`` sub-module of an ``FMANet``.
        path (str): An mmengine checkpoint (``state_dict`` with ``generator.net_d.*`` keys) or a BasicSR one
            (``params_ema`` / ``params`` with ``net_d.*`` keys).
    """
    checkpoint = torch.load(path, map_location='cpu')
    for field, prefix in (('state_dict', 'generator.net_d.'), ('params_ema', 'net_d.'), ('params', 'net_d.')):
        state = checkpoint.get(field) if isinstance(checkpoint, dict) else None
        if state:
            net_d_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if net_d_state:
                net_d.load_state_dict(net_d_state, strict=True)
                print_log(f'Loaded stage-1 Net_D from {path} ({field}).', logger='current')
                return
    raise ValueError(
        f'net_d_checkpoint: {path} holds no Net_D weights (expected state_dict with generator.net_d.* keys '
        '(mmengine) or params with net_d.* keys (BasicSR))'
    )
