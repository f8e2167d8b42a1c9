"""Loss terms, totals and gradients against the released implementation's values (parity fixture)."""

from __future__ import annotations

import math

from fmanet_plugin.losses.fmanet_loss import FMANetObjective, WarpingLoss, check_finite
from fmanet_plugin.utils.official_ckpt import official_key_to_plugin

import pytest
import torch
from conftest import to_btchw

RELEASED_TERMS = {
    'restoration': 'l_restoration',
    'recon': 'l_recon',
    'hr_warping': 'l_hr_warp',
    'lr_warping': 'l_lr_warp',
    'flow': 'l_flow',
    'D_TA': 'l_anchor_d',
    'R_TA': 'l_anchor_r',
}


def released_train_opt(official: dict) -> dict:
    """The released loss weights, expressed as this plugin's YAML ``train`` options."""
    w = official['train']
    return {
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
        'recon_opt': {'type': 'ReconstructionLoss', 'loss_weight': 1.0},
        'hr_warp_opt': {'type': 'WarpingLoss', 'loss_weight': w['hr_warping_loss_weight']},
        'lr_warp_opt': {'type': 'WarpingLoss', 'loss_weight': w['lr_warping_loss_weight']},
        'flow_opt': {'type': 'FlowLoss', 'loss_weight': w['flow_loss_weight']},
        'anchor_d_opt': {'type': 'TemporalAnchorLoss', 'loss_weight': w['D_TA_loss_weight']},
        'anchor_r_opt': {'type': 'TemporalAnchorLoss', 'loss_weight': w['R_TA_loss_weight']},
        'net_d_weight': w['Net_D_weight'],
    }


def fixture_batch(official: dict) -> dict:
    return {
        k: to_btchw(official[src]) for k, src in (('lq', 'x'), ('gt', 'y'), ('lq_sharp', 'lr_sharp'), ('flow', 'flow'))
    }


@pytest.mark.parametrize('stage', [1, 2])
def test_loss_terms_match_released(small_model, official, stage):
    if stage == 1:
        small_model.net_r = None
    small_model.train()
    batch = fixture_batch(official)
    terms = FMANetObjective(released_train_opt(official), stage)(small_model(batch['lq'], batch['gt']), batch)
    expected = official[f'loss_terms_stage{stage}']
    assert set(terms) == {RELEASED_TERMS[k] for k in expected}
    for released_name, value in expected.items():
        assert float(terms[RELEASED_TERMS[released_name]]) == pytest.approx(value, rel=1e-6, abs=1e-9)
    total = sum(terms.values())
    assert float(total) == pytest.approx(official[f'loss_total_stage{stage}'], rel=1e-6)


def test_stage2_gradients_match_released(small_model, official):
    small_model.train()
    batch = fixture_batch(official)
    terms = FMANetObjective(released_train_opt(official), 2)(small_model(batch['lq'], batch['gt']), batch)
    sum(terms.values()).backward()
    params = dict(small_model.named_parameters())
    assert len(official['grads_stage2']) == len(params)
    for released_key, expected in official['grads_stage2'].items():
        grad = params[official_key_to_plugin(released_key)].grad
        assert grad is not None, released_key
        assert torch.allclose(grad, expected, rtol=1e-3, atol=1e-6), released_key


def test_warping_loss_repeats_centre_and_respects_contract():
    warped = torch.zeros(2, 3, 1, 2, 2)
    centre = torch.ones(2, 1, 2, 2)
    assert float(WarpingLoss(loss_weight=0.5)(warped, centre)) == pytest.approx(0.5)
    assert float(WarpingLoss(reduction='sum')(warped, centre)) == pytest.approx(24.0)
    with pytest.raises(ValueError):
        WarpingLoss(reduction='max')


def test_non_finite_loss_names_iteration_and_term():
    with pytest.raises(FloatingPointError, match='iteration 7: loss term l_flow is nan'):
        check_finite({'l_recon': torch.tensor(1.0), 'l_flow': torch.tensor(math.nan)}, 7)


def test_objective_requires_a_loss_and_a_flow_when_configured():
    with pytest.raises(ValueError, match='no loss configured'):
        FMANetObjective({}, 1)
    objective = FMANetObjective({'flow_opt': {'type': 'FlowLoss'}}, 1)
    with pytest.raises(KeyError, match="'flow'"):
        objective({'image_flow': torch.zeros(1, 3, 2, 4, 4)}, {'lq': torch.zeros(1, 3, 3, 4, 4), 'gt': None})
