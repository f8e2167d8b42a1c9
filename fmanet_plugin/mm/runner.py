"""mmengine's Runner with atomic checkpoint saves (config: ``runner_type = 'fmanet_plugin.AtomicCheckpointRunner'``).

mmengine writes a checkpoint straight under its final name (``iter_<n>.pth``, ``best_*.pth``): a run killed while
writing leaves a truncated file that ``--resume`` then picks up. Here every local save goes to a hidden temporary
file next to it, is ``fsync``-ed and renamed into place (:func:`fmanet_plugin.utils.atomic_io.atomic_path`), so the
file appears only complete and an existing one is replaced only by a complete one. The checkpoint's content is
mmengine's own (``Runner.save_checkpoint``); saves to other storage backends are left to their backend.
"""

from __future__ import annotations

import os.path as osp

from fmanet_plugin.mm.registry import RUNNERS
from fmanet_plugin.utils.atomic_io import atomic_path

from mmengine.dist import master_only
from mmengine.runner import Runner


@RUNNERS.register_module()
class AtomicCheckpointRunner(Runner):
    """A :class:`mmengine.runner.Runner` whose :meth:`save_checkpoint` is atomic on local disks."""

    @master_only
    def save_checkpoint(
        self,
        out_dir: str,
        filename: str,
        file_client_args: dict | None = None,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        meta: dict | None = None,
        by_epoch: bool = True,
        backend_args: dict | None = None,
    ) -> None:
        """Save as ``Runner.save_checkpoint`` does, through a temporary file renamed to ``out_dir/filename``."""
        kwargs = dict(
            file_client_args=file_client_args,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=backend_args,
        )
        if file_client_args is not None or backend_args is not None or '://' in str(out_dir):
            super().save_checkpoint(out_dir, filename, **kwargs)  # remote storage: its backend's own put
            return
        with atomic_path(osp.join(out_dir, filename)) as tmp:
            super().save_checkpoint(out_dir, osp.relpath(tmp, out_dir), **kwargs)
