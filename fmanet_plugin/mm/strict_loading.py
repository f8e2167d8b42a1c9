"""Refuse a checkpoint of another configuration before mmengine loads it (it loads ``load_from`` non-strictly).

mmengine's ``Runner.load_checkpoint`` defaults to ``strict=False``: a checkpoint of another network size is
skipped with "size mismatch" warnings and training starts from random weights; ``--resume`` fails later in the
optimizer. :func:`check_runner_checkpoint` checks the file the Runner is about to load (``load_from`` or the
latest checkpoint of ``--resume``) and raises one line naming the file and the tensors whose sizes differ.
"""

from __future__ import annotations

import os.path as osp

from fmanet_plugin.train import TrainingError

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner, find_latest_checkpoint
from torch import nn


class CheckpointMismatchError(TrainingError):
    """A checkpoint does not fit the configured network."""


def state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 3) -> str:
    """One line describing how ``found`` differs from ``expected`` (``''`` when keys and sizes agree)."""
    sizes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]

    def listing(items: list[str]) -> str:
        return ', '.join(items[:limit]) + (', ...' if len(items) > limit else '')

    parts = []
    if sizes:
        shown = [f'{k} {tuple(found[k].shape)} (checkpoint) vs {tuple(expected[k].shape)} (model)' for k in sizes]
        parts.append(f'{len(sizes)} tensor(s) differ in size ({listing(shown)})')
    for label, keys in (('missing', missing), ('unexpected', unexpected)):
        if keys:
            parts.append(f'{len(keys)} {label} key(s) ({listing(keys)})')
    return '; '.join(parts)


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
    if path is None or not osp.isfile(path):
        return
    checkpoint = torch.load(path, map_location='cpu')
    weights = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointMismatchError(f'{path}: expected an mmengine checkpoint with a state_dict')
    weights = {k.removeprefix('module.'): v for k, v in weights.items()}
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    kind = 'resume' if runner._resume else 'load_from'
    check_fits(model, weights, f'{kind}: {path}')
