"""Checkpoints of BasicSR models for the plugin's training pipeline: atomic writes, extra resume state.

``fmanet_plugin.train.pipeline`` calls ``model.save(epoch, current_iter, extra_state)``; basicsr's models take no
``extra_state``. Mixed into every model the pipeline trains (``FMANetModel``, the baseline adapters).
"""

from __future__ import annotations

import os

from fmanet_plugin.utils.atomic_io import atomic_torch_save

from basicsr.utils.dist_util import master_only


class ResumableSaveMixin:
    """``save`` / ``save_network`` / ``save_training_state`` written atomically, the training state with
    ``extra_state`` (RNG states, epoch position) merged in; a failed write raises instead of being ignored."""

    def save(self, epoch: int, current_iter: int, extra_state: dict | None = None) -> None:
        """Save ``net_g`` (and ``net_g_ema``) weights, then the training state with ``extra_state`` merged in."""
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter, extra_state)

    @master_only
    def save_network(self, net, net_label: str, current_iter: int, param_key='params') -> None:
        """As basicsr's, written atomically; a failed write raises instead of being ignored."""
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        checkpoint = {}
        for net_, key in zip(nets, keys, strict=True):
            state = self.get_bare_model(net_).state_dict()
            checkpoint[key] = {k.removeprefix('module.'): v.detach().cpu() for k, v in state.items()}
        label = 'latest' if current_iter == -1 else current_iter
        atomic_torch_save(checkpoint, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    @master_only
    def save_training_state(self, epoch: int, current_iter: int, extra_state: dict | None = None) -> None:
        """basicsr's training state (epoch, iter, optimizers, schedulers) plus ``extra_state``, atomically."""
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            **(extra_state or {}),
        }
        atomic_torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))
