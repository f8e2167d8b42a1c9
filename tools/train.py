"""Train FMA-Net with BasicSR's training pipeline (``.yml`` options) or mmengine's Runner (``.py`` configs).

Usage:
    python tools/train.py -opt options/fmanet_stage2.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug]
    torchrun --nproc_per_node=4 [--max-restarts=3] tools/train.py -opt options/fmanet_stage2.yml --launcher pytorch
    python tools/train.py options/mm/demo_stage1.py [--amp] [--resume [CKPT]] [--cfg-options k=v] [--launcher ...]
    (mmengine configs: see README "The OpenMMLab way" and ``fmanet_plugin/mm/train.py``)

Experiments, logs and tensorboard files go to ``experiments/`` and ``tb_logger/`` under the current
directory. Runs on CPU (``num_gpu: 0``, gloo when distributed), one GPU or many (NCCL). ``.yml`` runs resume
exactly, survive kills during checkpoint writes and restart under ``torchrun --max-restarts``
(``fmanet_plugin.train.pipeline``; README, "When things go wrong"). On the CPU the number of torch threads
follows the machine's free cores and the batch size (``fmanet_plugin.utils.threads``; re-checked every 10 s by
the BasicSR model) unless ``OMP_NUM_THREADS`` is set.
"""

from __future__ import annotations

import os
import sys

import fmanet_plugin  # noqa: F401  (registers the plugin; basicsr import shim)
from fmanet_plugin.compat import patch_basicsr_training
from fmanet_plugin.train.elastic import exit_with_launcher
from fmanet_plugin.utils.errors import main_entry
from fmanet_plugin.utils.threads import set_num_threads

import torch


def mmengine_argv(argv: list[str]) -> list[str] | None:
    """The arguments for the mmengine trainer when the config is a ``.py`` file (first argument or ``-opt``)."""
    if argv and argv[0].endswith('.py'):
        return argv
    if '-opt' in argv[:-1] and argv[argv.index('-opt') + 1].endswith('.py'):
        i = argv.index('-opt')
        return [argv[i + 1]] + argv[:i] + argv[i + 2 :]
    return None


def train(argv: list[str]) -> None:
    mm_argv = mmengine_argv(argv)
    set_num_threads()  # free cores now; FMANetModel refines it with the batch size and re-checks during training
    if mm_argv is not None:
        from fmanet_plugin.mm.train import main as train_with_mmengine

        train_with_mmengine([a for a in mm_argv if a != '--debug'])
        if torch.distributed.is_initialized():  # gloo aborts at interpreter exit when its group is left open
            torch.distributed.destroy_process_group()
        return
    if '-opt' in argv[:-1] and not os.path.isfile(argv[argv.index('-opt') + 1]):
        raise FileNotFoundError(f'-opt: options file not found: {argv[argv.index("-opt") + 1]}')
    patch_basicsr_training()
    from fmanet_plugin.train.pipeline import train_pipeline

    train_pipeline(os.getcwd())


def main() -> None:
    exit_with_launcher()
    train(sys.argv[1:])


if __name__ == '__main__':
    main_entry(main, keep_debug_flag=True)  # expected errors: one line (--debug: the traceback)
