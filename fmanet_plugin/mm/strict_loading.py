"""Refuse a checkpoint of another configuration before mmengine loads it (it loads ``load_from`` non-strictly).

mmengine's ``Runner.load_checkpoint`` defaults to ``strict=False``: a checkpoint of another network size is
skipped with "size mismatch" warnings and training starts from random weights; ``--resume`` fails later in the
optimizer. :func:`check_runner_checkpoint` checks the file the Runner is about to load (``load_from`` or the
latest checkpoint of ``--resume``) and raises one line naming the file and the tensors whose sizes differ.
"""

from __future__ import annotations

import os.path as osp

from fmanet_plugin.train.training_error import TrainingError
from fmanet_plugin.utils.checkpoint import state_dict_mismatch

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner, find_latest_checkpoint
from torch import nn


class CheckpointMismatchError(TrainingError):
    """A checkpoint does not fit the configured network."""


def check_fits(network: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``weights`` has exactly ``network``'s keys and sizes."""
    problem = state_dict_mismatch(network.state_dict(), weights)
    if problem:
        raise CheckpointMismatchError(f'{source} does not fit the configured network: {problem}')


def checkpoint_to_load(runner: Runner) -> str | None:
    """The file ``runner.train()`` will load: ``load_from``, or with ``--resume`` and no file the latest one."""
    if runner._resume and runner._load_from is None:
        return find_latest_checkpoint(runner.work_dir)
    return runner._load_from


def check_runner_checkpoint(runner: Runner) -> None:
    """Raise one line if the checkpoint the Runner will load has other keys or tensor sizes than its model."""
    path = checkpoint_to_load(runner)
    kind = 'resume' if runner._resume else 'load_from'
    if path is None:
        return
    if not osp.isfile(path):
        raise FileNotFoundError(f'{kind}: checkpoint not found: {path}')
    try:
        checkpoint = torch.load(path, map_location='cpu')
    except Exception as err:  # a file that is not a checkpoint raises anything from KeyError to RuntimeError
        reason = (str(err).strip().splitlines() or [''])[0][:120]
        raise CheckpointMismatchError(
            f'{kind}: {path}: not a PyTorch checkpoint ({type(err).__name__}: {reason})'
        ) from None
    weights = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointMismatchError(f'{path}: expected an mmengine checkpoint with a state_dict')
    weights = {k.removeprefix('module.'): v for k, v in weights.items()}
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    check_fits(model, weights, f'{kind}: {path}')
