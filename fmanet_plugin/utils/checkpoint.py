"""Reading network weights from checkpoint files: the one place that decides which entry of a file is used.

Precedence (:data:`PARAM_KEYS`): a BasicSR checkpoint may hold ``params_ema`` (the exponential moving average of
the weights, what BasicSR evaluates) and ``params`` (the trained weights). Unless the caller names the entries to
try, the first present of ``params_ema``, ``params`` is read; a file holding neither is read as a bare state dict.
Callers that must have a given entry (resuming training reads ``params``) pass it explicitly. A ``module.``
prefix (DataParallel) is removed; a released, unconverted FMA-Net checkpoint is refused with a hint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from fmanet_plugin.utils.official_ckpt import NET_D_PREFIX, NET_R_PREFIX

import torch
from torch import nn

PARAM_KEYS = ('params_ema', 'params')


def read_checkpoint(path: str) -> Mapping:
    """``torch.load`` a dict checkpoint on the CPU, weights only.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file does not hold a dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises KeyError, UnpicklingError, RuntimeError... for non-checkpoints
        reason = (str(err).strip().splitlines() or [''])[0][:120]
        raise ValueError(
            f'{path}: not a PyTorch checkpoint, or a damaged one ({type(err).__name__}: {reason})'
        ) from None
    if not isinstance(ckpt, Mapping):
        raise ValueError(f'{path}: expected a dict checkpoint, got {type(ckpt).__name__}')
    return ckpt


def select_state_dict(
    ckpt: Mapping, path: str, param_keys: str | Sequence[str] | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Pick the network weights of a loaded checkpoint (see the module docstring).

    Args:
        ckpt (Mapping): The loaded checkpoint.
        path (str): Its file, for error messages.
        param_keys (str | Sequence[str] | None): Entry, or entries in order of preference; ``None`` means
            :data:`PARAM_KEYS`.

    Returns:
        tuple[dict[str, Tensor], str]: The state dict and the entry it came from (``'<state dict>'`` for a bare
        one).

    Raises:
        ValueError: If none of the requested entries exists (when the file has one of :data:`PARAM_KEYS`, or an
            entry was named explicitly), the entry is not a state dict, or the file is a released checkpoint.
    """
    keys = PARAM_KEYS if param_keys is None else (param_keys,) if isinstance(param_keys, str) else tuple(param_keys)
    key = next((k for k in keys if k in ckpt), None)
    if key is None and (param_keys is not None or any(k in ckpt for k in PARAM_KEYS)):
        raise ValueError(f'{path}: no {" / ".join(map(repr, keys))} entry (found {sorted(ckpt)[:8]})')
    state = ckpt[key] if key is not None else ckpt
    if not isinstance(state, Mapping):
        raise ValueError(f'{path}: entry {key!r} is not a state dict')
    if (
        'model_D_state_dict' in state
        or 'model_R_state_dict' in state
        or any(str(k).startswith((NET_D_PREFIX, NET_R_PREFIX)) for k in state)
    ):
        raise ValueError(
            f'{path}: this is a released FMA-Net checkpoint; convert it first with '
            'tools/convert_official_ckpt.py (add --rgb for RGB pipelines)'
        )
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path}: entry {key or "<file>"!r} is not a state dict of tensors')
    state = {(k[len('module.') :] if k.startswith('module.') else k): v for k, v in state.items()}
    return state, key or '<state dict>'


def read_state_dict(path: str, param_keys: str | Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read the network weights of a BasicSR/plugin checkpoint file (:func:`select_state_dict` on its content).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: See :func:`select_state_dict`.
    """
    return select_state_dict(read_checkpoint(path), path, param_keys)


def load_weights(model: nn.Module, path: str, param_keys: str | Sequence[str] | None = None) -> str:
    """Load a checkpoint into ``model`` strictly (every key present, none extra, same shapes).

    Returns:
        str: The checkpoint entry that was loaded.

    Raises:
        ValueError: One line with the file, the counts and first keys of the missing, unexpected and mis-shaped
            tensors and the likely cause (:func:`state_dict_mismatch`).
    """
    state, key = read_state_dict(path, param_keys)
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(f'{path} [{key}] does not match the {type(model).__name__} configuration: {problem}')
    model.load_state_dict(state, strict=True)
    return key


def _listing(items: list[str], limit: int) -> str:
    return ', '.join(items[:limit]) + (', ...' if len(items) > limit else '')


def likely_mismatch_cause(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], mis_shaped: list[str]
) -> str:
    """A guess at why two FMA-Net state dicts differ: the stage, or the channel count (``dim``)."""
    model_r = any(k.startswith('net_r.') for k in expected)
    found_r = any(k.startswith('net_r.') for k in found)
    found_d = any(k.startswith('net_d.') for k in found)
    if model_r and found_d and not found_r:
        return 'stage-1 checkpoint for a stage-2 model (give it as path.pretrain_network_d instead)'
    if found_r and not model_r and any(k.startswith('net_d.') for k in expected):
        return 'stage-2 checkpoint for a stage-1 model (set network_g.stage: 2)'
    if mis_shaped:
        pairs: dict[tuple[int, int], int] = {}
        for k in mis_shaped:
            a, b = found[k].shape, expected[k].shape
            if a and b and a[0] != b[0]:
                pairs[(a[0], b[0])] = pairs.get((a[0], b[0]), 0) + 1
        if pairs:
            (ckpt_c, model_c), _ = max(pairs.items(), key=lambda item: item[1])
            return (
                f'different network size, e.g. a different `dim` (most differ in channels: {ckpt_c} in the '
                f'checkpoint, {model_c} in the model)'
            )
        return 'different network options (kernel sizes, num_seq, num_flow, ...)'
    return ''


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], limit: int = 3) -> str:
    """One line describing how ``found`` (a checkpoint) differs from ``expected`` (a model's state dict):
    counts and the first ``limit`` keys of mis-shaped, missing and unexpected tensors and the likely cause;
    ``''`` when keys and sizes agree."""
    sizes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    parts = []
    if sizes:
        shown = [f'{k} {tuple(found[k].shape)} (checkpoint) vs {tuple(expected[k].shape)} (model)' for k in sizes]
        parts.append(f'{len(sizes)} tensor(s) differ in size ({_listing(shown, limit)})')
    for label, keys in (('missing', missing), ('unexpected', unexpected)):
        if keys:
            parts.append(f'{len(keys)} {label} key(s) ({_listing(keys, limit)})')
    if not parts:
        return ''
    cause = likely_mismatch_cause(expected, found, sizes)
    return '; '.join(parts) + (f'; likely a {cause}' if cause else '')


def sub_state_dict(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` (e.g. ``'net_d.'``), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
