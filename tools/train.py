"""Train FMA-Net with BasicSR's training pipeline.

Usage:
    python tools/train.py -opt options/fmanet_stage2.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug]
    torchrun --nproc_per_node=4 tools/train.py -opt options/fmanet_stage2.yml --launcher pytorch

Experiments, logs and tensorboard files go to ``experiments/`` and ``tb_logger/`` under the current
directory. Runs on CPU (``num_gpu: 0``, gloo when distributed), one GPU or many (NCCL).
"""

from __future__ import annotations

import os

import fmanet_plugin  # noqa: F401  (registers the plugin; basicsr import shim)
from fmanet_plugin.compat import patch_basicsr_training


def main() -> None:
    patch_basicsr_training()
    from basicsr.train import train_pipeline

    train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
