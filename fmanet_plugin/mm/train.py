"""Train FMA-Net from an mmengine ``.py`` config with mmengine's Runner (``tools/train.py`` dispatches here).

Usage:
    python tools/train.py options/mm/demo_stage1.py [--work-dir DIR] [--amp] [--resume [CKPT]]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm]
    torchrun --nproc_per_node=2 tools/train.py options/mm/demo_stage2.py --launcher pytorch

On CPU (no CUDA) a distributed launch uses gloo, initialised here (mmengine's launcher assumes CUDA), and DDP
without device ids.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

from fmanet_plugin.compat import init_dist
from fmanet_plugin.mm.config_check import CfgOptionsAction, check_plugin_config
from fmanet_plugin.mm.strict_loading import check_runner_checkpoint

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train FMA-Net with an mmengine config (.py).')
    parser.add_argument('config', help='mmengine config file (.py)')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints (default: ./work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper; needs CUDA)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir when no CKPT is given',
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction, help='override config keys: key=value ("clips=[\'000\']")'
    )
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied (work dir, AMP, resume, launcher, CPU DDP settings)."""
    if not args.config.endswith('.py') or not osp.isfile(args.config):
        raise FileNotFoundError(f'config: expected an existing mmengine .py config, got {args.config!r}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_plugin_config(cfg.to_dict())  # unknown keys of the plugin's components: one line, not a traceback
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp: mmengine mixed precision (AmpOptimWrapper) needs a CUDA device')
        for wrapper in cfg.optim_wrapper.values():
            if isinstance(wrapper, dict) and 'optimizer' in wrapper:
                wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
        if 'optimizer' in cfg.optim_wrapper:
            cfg.optim_wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic')
    if args.resume:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    if args.launcher != 'none':
        # the model's own train_step (joint update of both networks) runs only under the per-sub-module wrapper
        cfg.model_wrapper_cfg = {'type': 'MMSeparateDistributedDataParallel', **(cfg.get('model_wrapper_cfg') or {})}
        if not torch.cuda.is_available():
            cfg.model_wrapper_cfg['device_ids'] = None
    return cfg


def main(argv: list[str] | None = None) -> Runner:
    """Build the Runner from the command line, train, and return the Runner."""
    args = parse_args(argv)
    cfg = build_config(args)
    if args.launcher != 'none' and not torch.cuda.is_available():
        init_dist(args.launcher, backend='gloo')  # before the Runner, which then skips its CUDA-only init
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)  # runner_type: the config's
    check_runner_checkpoint(runner)  # mmengine would load a checkpoint of another size non-strictly
    runner.train()
    return runner


if __name__ == '__main__':
    main()
