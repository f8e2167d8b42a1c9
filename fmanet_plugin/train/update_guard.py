"""Stops training at the first non-finite loss or gradient, or an exploding update, before it can be saved.

Checked every iteration by ``FMANetModel.optimize_parameters``, in this order:

1. after the backward pass, the loss terms of this rank (the one that is non-finite is named);
2. the gradient norm of each network (after DDP's all-reduce, so all ranks agree and stop together);
3. after the optimizer step, each network's update relative to its weights:
   ``||w_after - w_before|| / ||w_before||`` must be finite and at most ``train.max_update_ratio``
   (default 1.0: a single step that moves the weights by more than their own norm is a divergence;
   ``null`` switches the check off).

A failure raises :class:`DivergenceError`, whose one-line message names the iteration, the loss terms and the
batch's ``clip/frame`` keys. Checkpoints are written only after a checked step, so none holds such weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fmanet_plugin.train.training_error import TrainingError

import torch
from torch import nn

DEFAULT_MAX_UPDATE_RATIO = 1.0


class DivergenceError(TrainingError):
    """Training produced a non-finite or exploding value; nothing of this iteration was saved."""


def describe_batch(keys: Sequence[str] | None, limit: int = 4) -> str:
    """``'batch 000/00000002, 001/00000003'`` (at most ``limit`` keys)."""
    if not keys:
        return 'batch keys unknown'
    keys = list(keys)
    more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return 'batch ' + ', '.join(keys[:limit]) + more


def describe_losses(losses: Mapping[str, torch.Tensor]) -> str:
    return ', '.join(f'{name}={float(value.detach()):.4g}' for name, value in losses.items())


class UpdateGuard:
    """Checks one training iteration of named parameter groups (e.g. ``{'net_d': [...], 'net_r': [...]}``).

    Args:
        groups (dict[str, list[nn.Parameter]]): The parameters each optimizer updates, by network name.
        max_update_ratio (float | None): Largest allowed relative update per step; ``None`` disables it.
    """

    def __init__(self, groups: Mapping[str, Sequence[nn.Parameter]], max_update_ratio: float | None):
        self.groups = {name: list(params) for name, params in groups.items()}
        if max_update_ratio is not None:
            max_update_ratio = float(max_update_ratio)
            if not max_update_ratio > 0:
                raise TrainingError(
                    f'train.max_update_ratio: expected a positive number or null, got {max_update_ratio}'
                )
        self.max_update_ratio = max_update_ratio
        self._before: dict[str, list[torch.Tensor]] = {}

    def check_losses(self, losses: Mapping[str, torch.Tensor], iteration: int, keys: Sequence[str] | None) -> None:
        """Raise if a loss term is NaN/inf."""
        for name, value in losses.items():
            number = float(value.detach())
            if not math.isfinite(number):
                raise DivergenceError(
                    f'iteration {iteration}: loss term {name} is {number} ({describe_batch(keys)}); '
                    'stopped before the update, nothing of this iteration is saved'
                )

    def check_gradients(self, losses: Mapping[str, torch.Tensor], iteration: int, keys: Sequence[str] | None) -> None:
        """Raise if a network's gradient norm is NaN/inf (all ranks see the same reduced gradients)."""
        for name, params in self.groups.items():
            grads = [p.grad for p in params if p.grad is not None]
            norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
            if not math.isfinite(norm):
                raise DivergenceError(
                    f'iteration {iteration}: gradient norm of {name} is {norm} (loss terms {describe_losses(losses)}; '
                    f'{describe_batch(keys)}); stopped before the update, nothing of this iteration is saved'
                )

    def before_step(self) -> None:
        """Remember the weights (only when the update ratio is checked)."""
        if self.max_update_ratio is not None:
            self._before = {name: [p.detach().clone() for p in params] for name, params in self.groups.items()}

    def check_update(self, losses: Mapping[str, torch.Tensor], iteration: int, keys: Sequence[str] | None) -> None:
        """Raise if a network's new weights are non-finite or moved by more than ``max_update_ratio``."""
        for name, params in self.groups.items():
            weights = [p.detach() for p in params]
            norm = float(torch.nn.utils.get_total_norm(weights))
            problem = None
            if not math.isfinite(norm):
                problem = f'the weights of {name} became {norm}'
            elif self.max_update_ratio is not None:
                before = self._before[name]
                base = float(torch.nn.utils.get_total_norm(before))
                delta = float(torch.nn.utils.get_total_norm([w - b for w, b in zip(weights, before)]))
                ratio = delta / max(base, 1e-12)
                if not ratio <= self.max_update_ratio:
                    problem = (
                        f"the update of {name} is {ratio:.3g} x its weights' norm "
                        f'(train.max_update_ratio: {self.max_update_ratio:g})'
                    )
            if problem:
                raise DivergenceError(
                    f'iteration {iteration}: {problem} (loss terms {describe_losses(losses)}; {describe_batch(keys)}); '
                    'stopped before saving, the newest checkpoint is unaffected'
                )
        self._before = {}
