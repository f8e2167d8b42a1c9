"""Batches video windows for FMA-Net: per-sample (t, c, h, w) tensors -> one (b, t, c, h, w) tensor."""

from __future__ import annotations

from fmanet_plugin.mm.registry import MODELS

import torch
from mmengine.model import BaseDataPreprocessor


@MODELS.register_module()
class FMANetDataPreprocessor(BaseDataPreprocessor):
    """Moves a batch to the model's device and stacks its LR windows into a 5-D tensor.

    Values are left as they are (RGB in [0, 1], the network's contract); the data samples (targets, metainfo)
    are moved to the device unchanged.

    Args:
        non_blocking (bool): Asynchronous host-to-device copies. Default: False.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """Batch ``data`` on the model's device.

        Args:
            data (dict): ``inputs``: a list of (t, c, h, w) tensors (``pseudo_collate``) or a (b, t, c, h, w)
                tensor; ``data_samples`` (optional): a list of ``BaseDataElement``.
            training (bool): Unused (no training-only processing).

        Returns:
            dict: ``inputs`` float (b, t, c, h, w) on the device, ``data_samples``.
        """
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(x.shape) for x in inputs}
            if len(shapes) != 1 or len(next(iter(shapes))) != 4:
                raise ValueError(
                    'FMANetDataPreprocessor: inputs must be (t, c, h, w) windows of one size, '
                    f'got shapes {sorted(shapes)}'
                )
            inputs = torch.stack(list(inputs))
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 5:
            got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f'FMANetDataPreprocessor: inputs must be a (b, t, c, h, w) video batch, got {got}')
        return {'inputs': inputs.float(), 'data_samples': data.get('data_samples')}
