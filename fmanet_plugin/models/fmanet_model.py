"""FMANetModel: two-stage FMA-Net training in BasicSR (stage 1: Net_D; stage 2: Net_D and Net_R)."""

from __future__ import annotations

import math
import os.path as osp
from collections import OrderedDict
from functools import partial

from fmanet_plugin.losses.fmanet_loss import LOSS_OPTION_KEYS, FMANetObjective
from fmanet_plugin.metrics.clip_eval import ClipEvaluator
from fmanet_plugin.models.resumable_save import ResumableSaveMixin
from fmanet_plugin.train.update_guard import DEFAULT_MAX_UPDATE_RATIO, UpdateGuard
from fmanet_plugin.utils.atomic_io import atomic_imwrite
from fmanet_plugin.utils.checkpoint import read_state_dict, state_dict_mismatch, sub_state_dict
from fmanet_plugin.utils.threads import ThreadGovernor

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

# tensors of a training batch moved to the device (see docs/CONTRIBUTING.md, "Training batch")
BATCH_KEYS = ('lq', 'gt', 'lq_sharp', 'flow')
# the metric computed on consecutive frame pairs of a clip rather than per frame
TOF_METRIC = 'calculate_tof'


@MODEL_REGISTRY.register()
class FMANetModel(ResumableSaveMixin, SRModel):
    """FMA-Net training and validation.

    Options beyond :class:`basicsr.models.sr_model.SRModel`'s:

    * ``network_g.stage``: 1 trains Net_D alone; 2 trains Net_D and Net_R.
    * ``path.pretrain_network_d``: stage-1 checkpoint whose Net_D initialises stage 2 (ignored when
      resuming). ``path.pretrain_network_g`` loads a whole model, e.g. a converted released checkpoint
      for fine-tuning (optimizer state starts fresh).
    * ``path.pretrain_network_d_state``: a stage-1 training state (``training_states/<iter>.state``) whose
      Net_D optimizer (Adam moments and step counts, its learning rate) and scheduler (position and milestones)
      continue in stage 2, as the released recipe starts stage 2 (``../shared/SPEC.md``); Net_R's optimizer
      and scheduler start fresh. Use it with ``pretrain_network_d`` pointing at the weights of the same
      iteration. Without it (this package's default recipe) ``optim_d`` restarts at its configured rate.
      Ignored when resuming. Each scheduler steps once per iteration (the released trainer's extra Net_D step
      and missing Net_R step are not copied).
    * ``train.optim_d`` / ``train.optim_r``: one optimizer per network (stage 1 needs ``optim_d``
      only); ``train.scheduler`` is instantiated once per optimizer and each steps once per iteration.
    * ``train.{pixel,recon,hr_warp,lr_warp,flow,anchor_d,anchor_r}_opt`` and ``train.net_d_weight``:
      loss terms (see :class:`fmanet_plugin.losses.fmanet_loss.FMANetObjective`).
    * ``train.max_update_ratio``: largest relative weight update of one step (default 1.0, ``null``: off);
      see :mod:`fmanet_plugin.train.update_guard`.

    Checkpoints are written atomically (temporary name, fsync, rename) and the training state can carry
    the extra entries of an exact resume (see :mod:`fmanet_plugin.train.pipeline`).
    """

    # the keys of the ``train`` section (checked when the options are loaded: fmanet_plugin.utils.options)
    TRAIN_OPTIONS = (
        'optim_d',
        'optim_r',
        'scheduler',
        'total_iter',
        'warmup_iter',
        'ema_decay',
        'max_update_ratio',
        'deterministic',
        *LOSS_OPTION_KEYS,
    )
    # the keys of the ``val`` section: the training loop's (val_freq, save_img) and nondist_validation's (metrics)
    VAL_OPTIONS = ('val_freq', 'save_img', 'metrics')

    def init_training_settings(self) -> None:
        self.stage = self.opt['network_g'].get('stage', 2)
        self._load_stage1_net_d()
        train_opt = self.opt['train']
        self.net_g.train()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            self._init_ema()
        self.objective = FMANetObjective(train_opt, self.stage).to(self.device)
        self.setup_optimizers()
        self.setup_schedulers()
        self._load_stage1_net_d_state()
        self.thread_governor = None  # CPU threads follow the load (fmanet_plugin.utils.threads)
        if self.device.type == 'cpu':
            self.thread_governor = ThreadGovernor(self._work_size(), logger=get_root_logger())

    def _work_size(self) -> int | None:
        """Elements of one feature map of a training batch (b * t * h * w * dim at LR), for the CPU thread rule."""
        data_opt = self.opt.get('datasets', {}).get('train', {})
        gt_size, scale = data_opt.get('gt_size'), self.opt.get('scale', 4)
        if not gt_size:
            return None
        frames = data_opt.get('num_frame', self.opt['network_g'].get('num_seq', 3))
        dim = self.opt['network_g'].get('dim', 90)
        return data_opt.get('batch_size_per_gpu', 1) * frames * (gt_size // scale) ** 2 * dim

    def _init_ema(self) -> None:
        """``net_g_ema`` as in SRModel: ``params_ema`` of ``pretrain_network_g`` if given, else a copy of net_g."""
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def _load_stage1_net_d(self) -> None:
        path = self.opt['path'].get('pretrain_network_d')
        if not path or self.opt['path'].get('resume_state'):
            return
        state, _ = read_state_dict(path)
        net_d_state = sub_state_dict(state, 'net_d.')
        if not net_d_state:
            raise ValueError(f'path.pretrain_network_d: {path} holds no net_d.* parameters (a stage-1 checkpoint)')
        net_d = self.get_bare_model(self.net_g).net_d
        problem = state_dict_mismatch(net_d.state_dict(), net_d_state)
        if problem:
            raise ValueError(f'path.pretrain_network_d: {path} does not fit the configured Net_D: {problem}')
        net_d.load_state_dict(net_d_state, strict=True)
        get_root_logger().info(f'Loaded stage-1 Net_D from {path}.')

    def _load_stage1_net_d_state(self) -> None:
        path = self.opt['path'].get('pretrain_network_d_state')
        if not path or self.opt['path'].get('resume_state'):
            return
        if self.stage != 2:
            raise ValueError('path.pretrain_network_d_state is for stage 2 (it continues a stage-1 Net_D)')
        if not osp.isfile(path):
            raise FileNotFoundError(f'path.pretrain_network_d_state: {path} not found')
        state = torch.load(path, map_location=self.device, weights_only=False)
        if (
            not isinstance(state, dict)
            or len(state.get('optimizers', ())) != 1
            or len(state.get('schedulers', ())) != 1
        ):
            raise ValueError(
                f'path.pretrain_network_d_state: {path} is not a stage-1 training state '
                '(one optimizer and one scheduler expected)'
            )
        try:
            self.optimizers[0].load_state_dict(state['optimizers'][0])  # optim_d: Net_D's parameters, same order
        except ValueError as error:
            raise ValueError(f'path.pretrain_network_d_state: {path} does not match this Net_D: {error}') from None
        self.schedulers[0].load_state_dict(state['schedulers'][0])
        lrs = [group['lr'] for group in self.optimizers[0].param_groups]
        get_root_logger().info(
            f'Continued Net_D optimizer and scheduler from {path} (stage-1 iteration {state.get("iter")}, lr {lrs}).'
        )

    def load_network(
        self, net: torch.nn.Module, load_path: str, strict: bool = True, param_key: str | None = 'params'
    ) -> None:
        """As basicsr's (``param_key``, falling back to ``params``), through the plugin's checkpoint reader."""
        state, key = read_state_dict(load_path, None if param_key is None else (param_key, 'params'))
        net = self.get_bare_model(net)
        get_root_logger().info(f'Loading {type(net).__name__} model from {load_path}, with param key: [{key}].')
        if strict:
            problem = state_dict_mismatch(net.state_dict(), state)
            if problem:
                raise ValueError(
                    f'{load_path} [{key}] does not match the {type(net).__name__} configuration: {problem}'
                )
        self._print_different_keys_loading(net, state, strict)
        net.load_state_dict(state, strict=strict)

    def setup_optimizers(self) -> None:
        train_opt = self.opt['train']
        net = self.get_bare_model(self.net_g)
        parts = [('optim_d', net.net_d)] + ([('optim_r', net.net_r)] if net.net_r is not None else [])
        groups = {}
        for key, module in parts:
            if key not in train_opt:
                raise ValueError(f'train.{key} is required for stage {self.stage} (one optimizer per network)')
            optim_opt = dict(train_opt[key])
            optim_type = optim_opt.pop('type')
            params = [p for p in module.parameters() if p.requires_grad]
            self.optimizers.append(self.get_optimizer(optim_type, params, **optim_opt))
            groups[key.replace('optim_', 'net_')] = params
        self.update_guard = UpdateGuard(groups, train_opt.get('max_update_ratio', DEFAULT_MAX_UPDATE_RATIO))

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        optimizer_class = getattr(torch.optim, optim_type, None)
        if optimizer_class is None:
            raise ValueError(f'optimizer type {optim_type!r} is not in torch.optim')
        return optimizer_class(params, lr, **kwargs)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        """As basicsr's, but DDP also works on CPU (gloo): ``device_ids`` only on GPU."""
        if not self.opt['dist']:
            return super().model_to_device(net)
        net = net.to(self.device)
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        return DistributedDataParallel(
            net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False)
        )

    def feed_data(self, data: dict) -> None:
        self.batch = {k: data[k].to(self.device) for k in BATCH_KEYS if k in data}
        self.lq = self.batch['lq']
        self.batch_keys = data.get('key')
        if 'gt' in self.batch:
            self.gt = self.batch['gt']

    def optimize_parameters(self, current_iter: int) -> None:
        if self.thread_governor is not None:
            self.thread_governor.step()
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        outputs = self.net_g(self.lq, self.gt)
        losses = self.objective(outputs, self.batch)
        l_total = sum(losses.values())
        l_total.backward()
        # after backward: a non-finite loss on one rank reaches every rank's reduced gradients, so all stop
        guard, keys = self.update_guard, self.batch_keys
        guard.check_losses(losses, current_iter, keys)
        guard.check_gradients(losses, current_iter, keys)
        guard.before_step()
        for optimizer in self.optimizers:
            optimizer.step()
        guard.check_update(losses, current_iter, keys)
        losses['l_total'] = l_total
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self) -> None:
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            outputs = net(self.lq)
        net.train(was_training)
        # Stage 1 has no restored frame; validate Net_D by its temporal anchor of the centre frame.
        self.output = outputs['output'] if 'output' in outputs else outputs['anchor_d'][:, self.lq.shape[1] // 2]

    def get_current_visuals(self) -> OrderedDict:
        visuals = OrderedDict(lq=self.lq[:, self.lq.shape[1] // 2].detach().cpu(), result=self.output.detach().cpu())
        if hasattr(self, 'gt'):
            visuals['gt'] = self.gt.detach().cpu()
        return visuals

    def validation(self, dataloader, current_iter: int, tb_logger, save_img: bool = False) -> None:
        """As basicsr's, labelled with at most ``train.total_iter``, and not repeated for the same iteration.

        basicsr's loop runs the final validation with the iteration counter of the last loop exit, which is past
        ``total_iter`` (and validates again what ``val_freq`` already validated at ``total_iter``).
        """
        total_iter = int(self.opt.get('train', {}).get('total_iter', current_iter))
        current_iter = min(current_iter, total_iter)
        if getattr(self, '_validated_iter', None) == current_iter:
            return
        self._validated_iter = current_iter
        super().validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter: int, tb_logger, save_img: bool) -> None:
        """Metrics over a VSRDB test set (``VSRDBTestDataset``) through the shared clip evaluation loop.

        ``val.metrics`` entries of type ``calculate_tof`` are computed per consecutive pair of each clip, the others
        (basicsr's ``calculate_metric``, e.g. PSNR/SSIM) per frame; each is averaged over all frames (pairs) of all
        clips (:class:`fmanet_plugin.metrics.clip_eval.ClipEvaluator`). Images are saved per clip. Stage 1 has no
        restored frame: its metrics are skipped (Net_D is judged by its training losses).
        """
        dataset_name = dataloader.dataset.opt['name']
        metric_opts = self.opt['val'].get('metrics') or {}
        if self.stage == 1 and metric_opts:
            get_root_logger().info('Stage 1 (Net_D) has no restored frame: validation metrics skipped.')
            metric_opts = {}
        tof_names = [k for k, v in metric_opts.items() if v['type'] == TOF_METRIC]
        if len(tof_names) > 1:
            raise ValueError(f'val.metrics: at most one {TOF_METRIC} entry, got {tof_names}')
        frame_metrics = {
            name: partial(_frame_metric, opt=opt_) for name, opt_ in metric_opts.items() if name not in tof_names
        }
        evaluator = ClipEvaluator(frame_metrics, tof=tof_names[0] if tof_names else None)
        if not hasattr(self, 'metric_results'):
            self.metric_results = {}
            self._initialize_best_metric_results(dataset_name)
        for val_data in tqdm(dataloader, unit='frame', desc=f'val {dataset_name}', leave=False):
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            result = tensor2img([visuals['result']])
            clip, frame = val_data['clip'][0], val_data['frame'][0]
            gt_img = tensor2img([visuals['gt']]) if 'gt' in visuals and metric_opts else None
            evaluator.add(clip, int(val_data['frame_idx'][0]), int(val_data['num_frames'][0]), frame, result, gt_img)
            if save_img:
                folder = osp.join(self.opt['path']['visualization'], dataset_name, clip)
                atomic_imwrite(result, osp.join(folder, f'{frame}_{current_iter}.png'))
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
        evaluator.finish()
        _, average = evaluator.summarise(skip=0)
        self.metric_results = {name: average[name] for name in metric_opts if not math.isnan(average[name])}
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        if self.metric_results:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)


def _frame_metric(output: np.ndarray, gt: np.ndarray, opt: dict) -> float:
    return calculate_metric(dict(img=output, img2=gt), opt)
