"""Random-number states of every rank (python, numpy, torch CPU and CUDA), captured and restored for resume.

The states are stored as plain python / torch objects so that ``.state`` files load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger


def capture_rng() -> dict:
    """This process's random-number states."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': (kind, key.tolist(), int(pos), int(has_gauss), float(cached)),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Set this process's random-number states to ``state`` (from :func:`capture_rng`)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, key, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            get_root_logger().warning(
                f'resume: the checkpoint holds CUDA random states of {len(cuda)} devices, this process sees '
                f'{torch.cuda.device_count()}: CUDA random numbers are not continued'
            )


def gather_rng() -> list[dict]:
    """The random-number states of all ranks, in rank order (a collective: every rank must call it)."""
    state = capture_rng()
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def restore_rank_rng(states: list[dict], rank: int) -> None:
    """Restore this rank's entry of :func:`gather_rng`'s list; warn (and keep the seeded state) if it has none."""
    if rank < len(states):
        restore_rng(states[rank])
        if len(states) == (dist.get_world_size() if dist.is_initialized() else 1):
            return
    get_root_logger().warning(
        f'resume: the checkpoint was written by {len(states)} process(es), this run has a different count: '
        'random-number states are not continued exactly'
    )


@contextmanager
def rng_untouched():
    """Run a block (e.g. validation) without letting it consume the training run's random numbers."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)
