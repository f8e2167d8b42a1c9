"""What a training run was: its option file (network, budget, data) and its wall time from the experiment's log.

Used by the tools that compare runs (``tools/benchmark.py``) so that every model is reported with its training
budget next to its scores ("equal footing").
"""

from __future__ import annotations

import glob
import os.path as osp
import re
from datetime import datetime

import yaml

# basicsr's log lines start with '2024-01-31 12:34:56,789 INFO: '
_LOG_TIME = re.compile(r'^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d{3} ')


def read_run_options(path: str) -> dict:
    """Read a BasicSR option file (basicsr's ordered YAML loader).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it has no ``name`` or ``network_g``.
    """
    from basicsr.utils.options import ordered_yaml

    if not osp.isfile(path):
        raise FileNotFoundError(f'options file not found: {path}')
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    for key in ('name', 'network_g'):
        if not isinstance(opt, dict) or key not in opt:
            raise ValueError(f'{path}: missing top-level key {key!r}')
    return opt


def latest_checkpoint(opt: dict, experiments_root: str = 'experiments') -> str:
    """``<experiments_root>/<name>/models/net_g_latest.pth``, where basicsr writes a run's final weights."""
    return osp.join(experiments_root, opt['name'], 'models', 'net_g_latest.pth')


def log_wall_time(opt: dict, experiments_root: str = 'experiments') -> float | None:
    """Seconds from the first to the last timestamped line of the run's newest ``train_<name>_*.log``.

    Returns ``None`` when there is no log (or it has fewer than two timestamped lines). A resumed run writes a new
    log; only the newest is read.
    """
    logs = sorted(glob.glob(osp.join(experiments_root, opt['name'], f'train_{opt["name"]}_*.log')), key=osp.getmtime)
    if not logs:
        return None
    stamps = []
    with open(logs[-1], errors='replace') as f:
        for line in f:
            match = _LOG_TIME.match(line)
            if match:
                stamps.append(datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S'))
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) >= 2 else None


def keyframe_extractor_note(network_opt: dict) -> str | None:
    """How an IconVSR run's keyframe EDVR feature extractor started: ``'EDVR extractor pretrained (<edvr_path>)'``
    or ``'EDVR extractor random init'``; ``None`` for other networks."""
    if 'IconVSR' not in str(network_opt.get('type')):
        return None
    path = network_opt.get('edvr_path')
    return f'EDVR extractor pretrained ({path})' if path else 'EDVR extractor random init'


def training_budget(opt: dict, experiments_root: str = 'experiments') -> dict:
    """The training budget of a run from its options (``None`` where an option is absent).

    Returns:
        dict: ``iterations`` (``train.total_iter``; ``'+ stage 1'`` noted when ``path.pretrain_network_d`` or
        ``path.pretrain_network_d_state`` start it from a stage-1 run, ``'+ EDVR extractor'`` when an IconVSR
        starts from a trained extractor, ``network_g.edvr_path``), ``gt_patch``
        (``datasets.train.gt_size``), ``batch`` (``batch_size_per_gpu`` x ``num_gpu``), ``frames``
        (``datasets.train.num_frame``), ``data`` (the training GT folder and meta-info file) and
        ``wall_time_s`` (:func:`log_wall_time`).
    """
    train_set = (opt.get('datasets') or {}).get('train') or {}
    train_opt = opt.get('train') or {}
    path_opt = opt.get('path') or {}
    iterations = train_opt.get('total_iter')
    if iterations is not None and (path_opt.get('pretrain_network_d') or path_opt.get('pretrain_network_d_state')):
        iterations = f'{iterations} + stage 1'
    network_opt = opt.get('network_g') or {}
    if iterations is not None and keyframe_extractor_note(network_opt) and network_opt.get('edvr_path'):
        iterations = f'{iterations} + EDVR extractor'
    num_gpu = opt.get('num_gpu', 1)
    batch = train_set.get('batch_size_per_gpu')
    if batch is not None and isinstance(num_gpu, int) and num_gpu > 1:
        batch = f'{batch} x {num_gpu}'
    data = train_set.get('dataroot_gt')
    if data and train_set.get('meta_info_file'):
        data = f'{data} ({osp.basename(train_set["meta_info_file"])})'
    return {
        'iterations': iterations,
        'gt_patch': train_set.get('gt_size'),
        'batch': batch,
        'frames': train_set.get('num_frame'),
        'data': data,
        'wall_time_s': log_wall_time(opt, experiments_root),
    }
