"""FMA-Net's training objective: registered L1 terms and the two-stage composition.

Every term is an L1 loss with BasicSR's ``loss_weight``/``reduction`` contract (they subclass
``basicsr.losses.L1Loss``); the weights live in the YAML. Released weighting (SPEC.md):

* stage 1 (Net_D): ``recon + 0.1 hr_warp + 1e-4 flow + 0.1 anchor_d``;
* stage 2: ``restoration + net_d_weight * (stage-1 terms) + 0.1 lr_warp + 0.1 anchor_r`` with
  ``net_d_weight = 0.1``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.losses.basic_loss import L1Loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ReconstructionLoss(L1Loss):
    """L1 between Net_D's re-synthesised blurry LR centre frame ``recon`` (b, c, h, w) and the input's centre."""


@LOSS_REGISTRY.register()
class TemporalAnchorLoss(L1Loss):
    """L1 between temporal anchors (b, t, c, h, w) and the sharp LR sequence (b, t, c, h, w)."""


@LOSS_REGISTRY.register()
class FlowLoss(L1Loss):
    """L1 between the predicted image flow (b, t, 2, h, w) and pseudo-ground-truth (RAFT) flow (b, t, 2, h, w)."""


@LOSS_REGISTRY.register()
class WarpingLoss(L1Loss):
    """L1 between a sequence warped to the centre (b, t, c, h, w) and the centre frame (b, c, h, w).

    Used for the LR (``lr_warp`` vs the blurry centre) and HR (``hr_warp`` vs the sharp centre) terms.
    """

    def forward(self, warped: torch.Tensor, centre: torch.Tensor, weight=None, **kwargs) -> torch.Tensor:
        return super().forward(warped, centre.unsqueeze(1).expand_as(warped), weight, **kwargs)


# term name -> (output key, YAML option key, stage it belongs to)
_TERMS = OrderedDict(
    restoration=('output', 'pixel_opt', 2),
    recon=('recon', 'recon_opt', 1),
    hr_warp=('hr_warp', 'hr_warp_opt', 1),
    flow=('image_flow', 'flow_opt', 1),
    anchor_d=('anchor_d', 'anchor_d_opt', 1),
    lr_warp=('lr_warp', 'lr_warp_opt', 2),
    anchor_r=('anchor_r', 'anchor_r_opt', 2),
)

# the train-section keys of the loss terms (each optional) and the stage-2 Net_D factor
LOSS_OPTION_KEYS = (*(opt_key for _, opt_key, _ in _TERMS.values()), 'net_d_weight')


class FMANetObjective(nn.Module):
    """The weighted sum of FMA-Net's loss terms for stage 1 or 2, built from a BasicSR ``train`` section.

    Args:
        train_opt (dict): Options with ``pixel_opt``, ``recon_opt``, ``hr_warp_opt``, ``flow_opt``,
            ``anchor_d_opt``, ``lr_warp_opt``, ``anchor_r_opt`` (any may be omitted to drop the term)
            and ``net_d_weight`` (stage 2 factor of all Net_D terms; default 0.1).
        stage (int): 1 (Net_D terms only) or 2.
    """

    def __init__(self, train_opt: dict, stage: int) -> None:
        super().__init__()
        self.stage = stage
        self.net_d_weight = float(train_opt.get('net_d_weight', 0.1)) if stage == 2 else 1.0
        self.terms = nn.ModuleDict()
        for name, (_, opt_key, term_stage) in _TERMS.items():
            if term_stage <= stage and train_opt.get(opt_key):
                self.terms[name] = build_loss(dict(train_opt[opt_key]))
        if not self.terms:
            raise ValueError(f'train: no loss configured for stage {stage}; expected some of {_option_keys(stage)}')

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> OrderedDict:
        """Weighted loss terms.

        Args:
            outputs (dict): ``FMANet(lq, gt)`` outputs.
            batch (dict): ``lq`` (b, t, c, h, w), ``gt`` (b, t, c, sh, sw), ``lq_sharp`` (b, t, c, h, w),
                ``flow`` (b, t, 2, h, w) (needed only by the terms that use them).

        Returns:
            OrderedDict: ``l_<term>`` -> weighted scalar, including the Net_D factor in stage 2.
        """
        lq, gt = batch['lq'], batch['gt']
        t = lq.shape[1]
        targets = {
            'restoration': lambda: gt[:, t // 2],
            'recon': lambda: lq[:, t // 2],
            'hr_warp': lambda: gt[:, t // 2],
            'lr_warp': lambda: lq[:, t // 2],
            'flow': lambda: _require(batch, 'flow'),
            'anchor_d': lambda: _require(batch, 'lq_sharp'),
            'anchor_r': lambda: _require(batch, 'lq_sharp'),
        }
        losses = OrderedDict()
        for name, loss in self.terms.items():
            output_key, _, term_stage = _TERMS[name]
            factor = self.net_d_weight if term_stage == 1 else 1.0
            losses[f'l_{name}'] = factor * loss(outputs[output_key], targets[name]())
        return losses


def check_finite(losses: dict[str, torch.Tensor], current_iter: int) -> None:
    """Raise a FloatingPointError naming the iteration and the first non-finite loss term."""
    for name, value in losses.items():
        number = float(value.detach())
        if not math.isfinite(number):
            raise FloatingPointError(f'iteration {current_iter}: loss term {name} is {number}; stopping')


def _require(batch: dict, key: str) -> torch.Tensor:
    if key not in batch:
        raise KeyError(f'batch has no {key!r}: configure the dataset to provide it or drop the loss that needs it')
    return batch[key]


def _option_keys(stage: int) -> list[str]:
    return [opt_key for _, opt_key, term_stage in _TERMS.values() if term_stage <= stage]
