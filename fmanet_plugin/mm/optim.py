"""One optimizer per FMA-Net network (Net_D, Net_R) under mmengine, and the joint update of both.

FMA-Net's stage-2 loss is one sum over terms that depend on both networks, so it is back-propagated once and
then every network's optimizer steps (the BasicSR model does the same with its two torch optimizers). Each
network keeps its own optimizer wrapper and parameter schedulers (mmengine's ``OptimWrapperDict``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from fmanet_plugin.mm.registry import OPTIM_WRAPPER_CONSTRUCTORS

import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, DefaultOptimWrapperConstructor, OptimWrapper, OptimWrapperDict
from torch import nn

NETWORKS = ('net_d', 'net_r')


def bare_module(module: nn.Module) -> nn.Module:
    """``module`` without its (MM)DistributedDataParallel wrapper, if it has one."""
    return module.module if is_model_wrapper(module) else module


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FMANetOptimWrapperConstructor:
    """Builds an ``OptimWrapperDict`` with one wrapper per network of an ``FMANetRestorer``.

    Config (``optim_wrapper`` of a Runner config)::

        optim_wrapper = dict(
            constructor='fmanet_plugin.FMANetOptimWrapperConstructor',
            net_d=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))),
            net_r=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))))

    Each entry is built by mmengine's ``DefaultOptimWrapperConstructor`` on that network alone (a
    ``paramwise_cfg`` goes inside the entry). Stage 1 needs ``net_d`` only; entries of networks the model does
    not have are ignored. ``AmpOptimWrapper`` entries share one gradient scaler (see :func:`step_networks`).
    Gradient accumulation (``accumulative_counts``) is not supported.

    Args:
        optim_wrapper_cfg (dict): ``net_d`` / ``net_r`` optimizer wrapper configs.
        paramwise_cfg (dict | None): Must be None (per-network ``paramwise_cfg`` instead).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if paramwise_cfg is not None:
            raise ValueError('FMANetOptimWrapperConstructor: put paramwise_cfg inside optim_wrapper.net_d / .net_r')
        unknown = sorted(set(optim_wrapper_cfg) - set(NETWORKS))
        if unknown:
            raise ValueError(f'FMANetOptimWrapperConstructor: optim_wrapper keys must be {NETWORKS}, got {unknown}')
        self.optim_wrapper_cfg = optim_wrapper_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        generator = bare_module(bare_module(model).generator)
        wrappers = {}
        for name in NETWORKS:
            network = getattr(generator, name, None)
            if network is None:
                continue
            if name not in self.optim_wrapper_cfg:
                raise ValueError(
                    f'optim_wrapper.{name} is required: FMA-Net stage {generator.stage} trains {name} with its own '
                    'optimizer (see FMANetOptimWrapperConstructor)'
                )
            cfg = copy.deepcopy(dict(self.optim_wrapper_cfg[name]))
            if cfg.get('accumulative_counts', 1) != 1:
                raise ValueError(f'optim_wrapper.{name}.accumulative_counts: gradient accumulation is not supported')
            paramwise_cfg = cfg.pop('paramwise_cfg', None)
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, paramwise_cfg)(network)
        amp = [w for w in wrappers.values() if isinstance(w, AmpOptimWrapper)]
        if amp and len(amp) != len(wrappers):
            raise ValueError('optim_wrapper: use AmpOptimWrapper for every network or for none')
        for wrapper in amp[1:]:
            wrapper.loss_scaler = amp[0].loss_scaler
        return OptimWrapperDict(**wrappers)


def step_networks(wrappers: Sequence[OptimWrapper], loss: torch.Tensor) -> None:
    """Back-propagate ``loss`` once and step (then zero) every wrapper's optimizer.

    Plain wrappers use their own ``step`` (gradient clipping included). Mixed precision follows torch's recipe
    for several optimizers on one loss: all ``AmpOptimWrapper`` share one ``GradScaler``; the loss is scaled once,
    each optimizer is unscaled (and clipped) and stepped, and the scaler is updated once. (Calling each
    wrapper's ``step`` would update the shared scale between the optimizers.)

    Args:
        wrappers (Sequence[OptimWrapper]): One wrapper per network, from :class:`FMANetOptimWrapperConstructor`.
        loss (Tensor): The scalar total loss.
    """
    scaler = getattr(wrappers[0], 'loss_scaler', None)
    if scaler is None:
        loss.backward()
        for wrapper in wrappers:
            wrapper.step()
    else:
        if any(getattr(w, 'loss_scaler', None) is not scaler for w in wrappers):
            raise ValueError('step_networks: AmpOptimWrapper entries must share one loss scaler')
        scaler.scale(loss).backward()
        for wrapper in wrappers:
            if wrapper.clip_grad_kwargs:
                scaler.unscale_(wrapper.optimizer)
                params = [p for group in wrapper.param_groups for p in group['params'] if p.grad is not None]
                wrapper.clip_func(params, **wrapper.clip_grad_kwargs)
            scaler.step(wrapper.optimizer)
        # a float loss_scale is static: update() then resets the scale to it
        scaler.update(getattr(wrappers[0], '_scale_update_param', None))
    for wrapper in wrappers:
        wrapper.zero_grad()
