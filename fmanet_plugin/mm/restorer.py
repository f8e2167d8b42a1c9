"""FMANetRestorer: FMA-Net's two training stages and inference as an mmengine ``BaseModel``."""

from __future__ import annotations

from contextlib import ExitStack

from fmanet_plugin.losses.fmanet_loss import FMANetObjective, check_finite
from fmanet_plugin.mm.checkpoint import load_network_weights
from fmanet_plugin.mm.optim import NETWORKS, bare_module, step_networks
from fmanet_plugin.mm.registry import MODELS

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.structures import BaseDataElement

# per-sample training targets (data-sample fields) stacked into the batch FMANetObjective reads
TARGET_KEYS = ('gt', 'lq_sharp', 'flow')


@MODELS.register_module()
class FMANetRestorer(BaseModel):
    """FMA-Net for mmengine's Runner: stage 1 trains Net_D alone, stage 2 trains Net_D and Net_R.

    The loss is the plugin's :class:`~fmanet_plugin.losses.fmanet_loss.FMANetObjective` (the same terms and
    weights as the BasicSR model); each network is updated by its own optimizer wrapper
    (:class:`~fmanet_plugin.mm.optim.FMANetOptimWrapperConstructor`). A single ``OptimWrapper`` over the whole
    model also works (one optimizer for both networks).

    Args:
        generator (dict): The network, e.g. ``dict(type='fmanet_plugin.FMANet', stage=2, dim=90, ...)``.
        losses (dict | None): Loss terms in the BasicSR ``train`` format (``pixel_opt``, ``recon_opt``,
            ``hr_warp_opt``, ``flow_opt``, ``anchor_d_opt``, ``lr_warp_opt``, ``anchor_r_opt`` with types from
            basicsr's ``LOSS_REGISTRY``, and ``net_d_weight``). None: inference only.
        net_d_checkpoint (str | None): Stage-1 checkpoint (mmengine ``.pth`` or BasicSR ``net_g_*.pth``) whose
            Net_D initialises this model in :meth:`init_weights` (a resumed run then loads its own state).
        generator_checkpoint (str | None): A whole-network checkpoint of either toolbox (e.g. a converted
            released model) loaded in :meth:`init_weights` before ``net_d_checkpoint``, for fine-tuning.
        data_preprocessor (dict | None): Default: ``fmanet_plugin.FMANetDataPreprocessor``.
        init_cfg (dict | None): mmengine weight initialisation config.
    """

    def __init__(
        self,
        generator: dict,
        losses: dict | None = None,
        net_d_checkpoint: str | None = None,
        generator_checkpoint: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='fmanet_plugin.FMANetDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.generator = MODELS.build(generator)
        self.stage = self.generator.stage
        self.objective = FMANetObjective(dict(losses), self.stage) if losses else None
        self.net_d_checkpoint = net_d_checkpoint
        self.generator_checkpoint = generator_checkpoint

    def init_weights(self) -> None:
        super().init_weights()
        generator = bare_module(self.generator)
        if self.generator_checkpoint:
            load_network_weights(generator, self.generator_checkpoint)
        if self.net_d_checkpoint:
            load_network_weights(generator.net_d, self.net_d_checkpoint, prefix='net_d.')

    def forward(
        self, inputs: torch.Tensor, data_samples: list[BaseDataElement] | None = None, mode: str = 'tensor'
    ) -> dict | list:
        """Run the network in one of mmengine's three modes.

        Args:
            inputs (Tensor): Blurry LR windows (b, t, c, h, w) in [0, 1].
            data_samples (list[BaseDataElement] | None): Per sample: ``gt`` (t, c, s*h, s*w) sharp HR window,
                ``lq_sharp`` (t, c, h, w), ``flow`` (t, 2, h, w) (training); ``gt`` (c, s*h, s*w) (validation).
            mode (str): ``'loss'``: dict of weighted loss terms ``loss_<term>``; ``'predict'``: the data samples
                with ``pred`` (c, s*h, s*w) added (stage 1: Net_D's sharp LR anchor of the centre frame,
                (c, h, w)); ``'tensor'``: the network's raw output dict.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.generator(inputs)
        raise ValueError(f"FMANetRestorer: mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: torch.Tensor, data_samples: list[BaseDataElement]) -> dict[str, torch.Tensor]:
        if self.objective is None:
            raise ValueError('FMANetRestorer: training needs the losses argument')
        batch = {'lq': inputs}
        for key in TARGET_KEYS:
            if data_samples and all(key in sample for sample in data_samples):
                batch[key] = torch.stack([sample.get(key) for sample in data_samples])
        if 'gt' not in batch:
            raise KeyError('FMANetRestorer: training data samples need gt (the sharp HR window)')
        terms = self.objective(self.generator(inputs, batch['gt']), batch)
        return {f'loss_{name[len("l_") :]}': value for name, value in terms.items()}

    def predict(self, inputs: torch.Tensor, data_samples: list[BaseDataElement] | None) -> list[BaseDataElement]:
        outputs = self.generator(inputs)
        restored = outputs['output'] if 'output' in outputs else outputs['anchor_d'][:, inputs.shape[1] // 2]
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(restored))]
        for sample, pred in zip(data_samples, restored):
            sample.pred = pred
        return data_samples

    def train_step(self, data: dict | list, optim_wrapper: OptimWrapper) -> dict[str, torch.Tensor]:
        """One iteration: forward, one backward of the total loss, a step of every network's optimizer.

        Args:
            data (dict): A collated batch (``inputs``, ``data_samples``).
            optim_wrapper (OptimWrapperDict | OptimWrapper): Per-network wrappers (``net_d``, ``net_r``) or one
                wrapper over the whole model.

        Returns:
            dict[str, Tensor]: ``loss`` (total) and each ``loss_<term>`` for logging.
        """
        if isinstance(optim_wrapper, OptimWrapperDict):
            names = [name for name in NETWORKS if getattr(bare_module(self.generator), name, None) is not None]
            missing = [name for name in names if name not in optim_wrapper]
            if missing:
                raise KeyError(f'FMANetRestorer: optim_wrapper has no entry for {missing}')
            wrappers = [optim_wrapper[name] for name in names]
        else:
            wrappers = [optim_wrapper]
        with ExitStack() as stack:
            for wrapper in wrappers:
                stack.enter_context(wrapper.optim_context(self))
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        check_finite(losses, MessageHub.get_current_instance().get_info('iter', -1) + 1)
        total, log_vars = self.parse_losses(losses)
        step_networks(wrappers, total)
        return log_vars
