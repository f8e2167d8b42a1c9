"""Crash-safe BasicSR checkpoints: atomic writes, a validated choice of the checkpoint to resume, pruning.

A checkpoint of iteration ``k`` is the pair ``models/<net>_<k>.pth`` (one per saved network label, written
first) and ``training_states/<k>.state`` (written last). Every file is written with ``utils/atomic_io.py``
(temporary name in its folder, flushed, fsynced, renamed), so a final name never holds a half-written file; a
kill leaves at most a hidden temporary file, removed at the next resume.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fmanet_plugin.train.training_error import TrainingError
from fmanet_plugin.utils import atomic_io

import torch


def state_iterations(state_dir: str | os.PathLike) -> list[int]:
    """Iterations with a ``<k>.state`` file in ``state_dir``, newest first."""
    folder = Path(state_dir)
    if not folder.is_dir():
        return []
    return sorted((int(p.stem) for p in folder.glob('*.state') if p.stem.isdigit()), reverse=True)


def network_files(models_dir: str | os.PathLike, iteration: int) -> list[Path]:
    """The ``<net>_<iteration>.pth`` files of one checkpoint."""
    pattern = re.compile(rf'.+_{iteration}\.pth')
    folder = Path(models_dir)
    return sorted(p for p in folder.glob(f'*_{iteration}.pth') if pattern.fullmatch(p.name)) if folder.is_dir() else []


def reason(error: BaseException) -> str:
    """``'Type: first sentence of the message'`` of an exception (torch's loader errors run on for lines)."""
    lines = str(error).strip().splitlines()
    return f'{type(error).__name__}: {lines[0].split(". ")[0].rstrip(".")}' if lines else type(error).__name__


def check_checkpoint(opt: dict, iteration: int) -> tuple[dict | None, str]:
    """Load and check the checkpoint of ``iteration``.

    Returns:
        tuple[dict | None, str]: The training state, or ``None`` and one line saying what is wrong.
    """
    state_path = Path(opt['path']['training_states'], f'{iteration}.state')
    try:
        state = torch.load(state_path, map_location='cpu')
    except Exception as error:  # a truncated or foreign file: any loader error means unusable
        return None, f'{state_path} cannot be loaded ({reason(error)})'
    if not isinstance(state, dict) or state.get('iter') != iteration:
        found = state.get('iter') if isinstance(state, dict) else type(state).__name__
        return None, f'{state_path} is not the training state of iteration {iteration} (found {found})'
    labels = [network.replace('network_', 'net_') for network in opt if network.startswith('network_')]
    for label in labels:
        path = Path(opt['path']['models'], f'{label}_{iteration}.pth')
        if not path.is_file():
            return None, f'{path} is missing'
        try:
            weights = torch.load(path, map_location='cpu')
        except Exception as error:
            return None, f'{path} cannot be loaded ({reason(error)})'
        if not isinstance(weights, dict) or 'params' not in weights:
            return None, f"{path} holds no 'params'"
    return state, ''


def find_resume_state(opt: dict) -> tuple[dict | None, int | None, list[str]]:
    """The newest complete checkpoint of the experiment.

    Damaged checkpoints are skipped with one warning each, naming the file; the warnings are returned rather
    than logged because basicsr's logger must not be created before its log file is known. An explicit
    ``path.resume_state`` (without ``--auto_resume``) must be intact: no fallback, the user asked for that file.

    Returns:
        tuple: ``(training state, iteration, warnings)``; ``(None, None, warnings)`` when there is none.
    """
    warnings = []
    explicit = opt['path'].get('resume_state')
    if explicit and not opt.get('auto_resume'):
        stem = Path(explicit).stem
        if not stem.isdigit():
            raise TrainingError(f"path.resume_state: expected '<iteration>.state', got {explicit!r}")
        state, problem = check_checkpoint(
            {**opt, 'path': {**opt['path'], 'training_states': str(Path(explicit).parent)}}, int(stem)
        )
        if state is None:
            raise TrainingError(f'path.resume_state: {problem}')
        return state, int(stem), warnings
    iterations = state_iterations(opt['path']['training_states'])
    for i, iteration in enumerate(iterations):
        state, problem = check_checkpoint(opt, iteration)
        if state is not None:
            return state, iteration, warnings
        fallback = f'falling back to iteration {iterations[i + 1]}' if i + 1 < len(iterations) else 'starting anew'
        warnings.append(f'resume: checkpoint of iteration {iteration} is damaged: {problem}; {fallback}')
    return None, None, warnings


def remove_temporary_files(opt: dict) -> None:
    """Delete the temporary files that killed checkpoint writes left (see ``utils/atomic_io.py``)."""
    for key in ('models', 'training_states'):
        atomic_io.remove_temporary_files(opt['path'][key])


def check_keep(keep) -> int | None:
    """``logger.keep_checkpoints``: a positive integer or ``None`` (keep all)."""
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise TrainingError(f'logger.keep_checkpoints: expected a positive integer or null, got {keep!r}')
    return keep


def prune_checkpoints(opt: dict, keep: int | None, newest: int) -> None:
    """Keep the ``keep`` newest checkpoints (``newest`` = the one just written completely); ``None``: keep all.

    Only checkpoints older than ``newest`` are deleted, state first, so a kill while pruning never leaves a
    state without its networks.
    """
    if check_keep(keep) is None:
        return
    older = [k for k in state_iterations(opt['path']['training_states']) if k < newest]
    for iteration in older[keep - 1 :]:
        Path(opt['path']['training_states'], f'{iteration}.state').unlink(missing_ok=True)
        for path in network_files(opt['path']['models'], iteration):
            path.unlink(missing_ok=True)
