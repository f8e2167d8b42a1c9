"""The one place where basicsr 1.4.2 is adapted to current torch/torchvision.

Everything here is either an import-time shim that is harmless when not needed, or a small subclass
helper used explicitly by the plugin's own classes. Nothing in basicsr is patched globally except the
missing ``torchvision.transforms.functional_tensor`` module, without which ``import basicsr`` fails.

Known breakages handled (see README, "Compatibility"):

* ``basicsr/data/degradations.py`` imports ``torchvision.transforms.functional_tensor`` (removed in
  torchvision 0.17): we register a stand-in module exposing ``rgb_to_grayscale``.
* CUDA-only assumptions on CPU (``init_dist``, ``model_to_device``, validation metric tensors) are handled
  by ``init_dist`` below and by overrides in the plugin's model classes; resume state loading by
  ``fmanet_plugin.train.checkpoints`` (states load on CPU; optimizers move them to their parameters).
"""

from __future__ import annotations

import os
import sys
import types


def install_functional_tensor_shim() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable on torchvision >= 0.17."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401

        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[name] = shim


def init_dist(launcher: str, backend: str | None = None, **kwargs) -> None:
    """Initialise torch.distributed for ``torchrun`` (``pytorch``) or ``slurm`` launches, on GPU or CPU.

    basicsr's own ``init_dist`` divides by ``torch.cuda.device_count()`` and forces NCCL, so it
    cannot run on CPU. Here NCCL is used when CUDA is available and gloo otherwise.

    Args:
        launcher (str): ``'pytorch'`` (environment set by ``torchrun``) or ``'slurm'``.
        backend (str | None): Process-group backend; ``None`` picks ``nccl`` on GPU, ``gloo`` on CPU.
    """
    import subprocess

    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if launcher == 'slurm':
        proc_id = int(os.environ['SLURM_PROCID'])
        ntasks = int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
        addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ.setdefault('MASTER_PORT', str(kwargs.get('port', 29500)))
        os.environ.setdefault('MASTER_ADDR', addr)
        os.environ['WORLD_SIZE'] = str(ntasks)
        os.environ['RANK'] = str(proc_id)
        os.environ['LOCAL_RANK'] = str(proc_id % max(torch.cuda.device_count(), 1))
    elif launcher != 'pytorch':
        raise ValueError(f"launcher must be 'none', 'pytorch' or 'slurm', got {launcher!r}")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT')
    if attempt is None:
        dist.init_process_group(backend=backend)
        return
    # torchrun keeps its store across worker-group restarts: without a per-attempt prefix the restarted ranks
    # read the previous attempt's (dead) peer addresses and the gloo/NCCL connection fails.
    store, rank, world_size = next(dist.rendezvous('env://'))
    store = dist.PrefixStore(f'fmanet_attempt_{attempt}/', store)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)


install_functional_tensor_shim()


def patch_basicsr_training() -> None:
    """Swap basicsr's CUDA-only ``init_dist`` (used by its ``parse_options``) for the version above.

    Called explicitly by ``tools/train.py`` before the training pipeline; importing the plugin does not do
    it. Resume (CPU-loadable, validated states) lives in ``fmanet_plugin.train``; the DDP device handling in
    the plugin's model classes.
    """
    import basicsr.utils.options

    basicsr.utils.options.init_dist = init_dist
