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
  ``VideoModelDeviceMixin`` does the same for basicsr's own video models (``VSRDBEDVRModel``,
  ``VSRDBVideoRecurrentModel``), including ``VideoRecurrentModel``'s in-place squeeze of the fed batch.
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


class VideoModelDeviceMixin:
    """Runs basicsr's ``VideoBaseModel`` / ``VideoRecurrentModel`` subclasses on any device (mix in first).

    basicsr 1.4.2 creates the validation metric tensors with ``device='cuda'``, wraps DDP with
    ``device_ids=[torch.cuda.current_device()]`` and, in ``VideoRecurrentModel.dist_validation``, squeezes the
    batch in place after ``feed_data``: on CPU ``.to(device)`` returns the same tensor, so ``self.lq`` loses its
    batch axis. Here the metric tensors live on ``self.device``, DDP gets ``device_ids=None`` off CUDA and
    ``feed_data`` always copies. Everything else is basicsr's.
    """

    def model_to_device(self, net):
        import torch
        from torch.nn.parallel import DataParallel, DistributedDataParallel

        net = net.to(self.device)
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            find_unused = self.opt.get('find_unused_parameters', False)
            return DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
        if self.opt['num_gpu'] > 1:
            return DataParallel(net)
        return net

    def feed_data(self, data: dict) -> None:
        self.lq = data['lq'].to(self.device, copy=True)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device, copy=True)

    def dist_validation(self, dataloader, current_iter: int, tb_logger, save_img: bool) -> None:
        from collections import Counter

        import torch

        metrics = self.opt['val'].get('metrics')
        if metrics and not hasattr(self, 'metric_results'):  # basicsr fills it only when it is absent
            frames = Counter(dataloader.dataset.data_info['folder'])
            self.metric_results = {
                folder: torch.zeros(n, len(metrics), dtype=torch.float32, device=self.device)
                for folder, n in frames.items()
            }
        super().dist_validation(dataloader, current_iter, tb_logger, save_img)


install_functional_tensor_shim()


def patch_basicsr_training() -> None:
    """Swap basicsr's CUDA-only ``init_dist`` (used by its ``parse_options``) for the version above.

    Called explicitly by ``tools/train.py`` before the training pipeline; importing the plugin does not do
    it. Resume (CPU-loadable, validated states) lives in ``fmanet_plugin.train``; the DDP device handling in
    the plugin's model classes.
    """
    import basicsr.utils.options

    basicsr.utils.options.init_dist = init_dist
