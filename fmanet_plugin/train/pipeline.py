"""BasicSR's training pipeline with exact resume, crash-safe checkpoints and elastic restarts.

Built from basicsr's pieces (``parse_options``, ``build_dataset``/``build_dataloader``, ``build_model``,
``MessageLogger``, the prefetchers, its tensorboard/wandb loggers) with the same options, logs, validation,
print/save frequencies and ``--auto_resume``. What differs from ``basicsr.train.train_pipeline``:

* **Exact resume.** Each training state also holds every rank's random-number states, the epoch and the
  number of batches already taken from it; the data order and every sample's crop/window/flip draws are a
  function of ``(manual_seed, epoch, position)`` (:class:`~fmanet_plugin.data.resumable_sampler.ResumableSampler`),
  and validation does not consume training random numbers. A resumed run continues the unbroken one exactly.
* **Crash-safe checkpoints.** Written atomically; resume takes the newest checkpoint that loads and matches
  its iteration, warning about (and skipping) damaged ones; ``logger.keep_checkpoints: N`` keeps the last N.
* **Elastic.** A worker group restarted by ``torchrun --max-restarts=K`` resumes as with ``--auto_resume``;
  workers die with their launcher.
* **Divergence stop.** A non-finite or exploding step stops the run before anything of it is saved
  (:mod:`fmanet_plugin.train.update_guard`).
"""

from __future__ import annotations

import datetime
import logging
import math
import os.path as osp
import time

from fmanet_plugin.data.resumable_sampler import ResumableSampler
from fmanet_plugin.train.training_error import TrainingError
from fmanet_plugin.utils.options import prepare_options

import torch
import torch.distributed as dist
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import init_tb_loggers
from basicsr.utils import (
    AvgTimer,
    MessageLogger,
    check_resume,
    get_env_info,
    get_root_logger,
    get_time_str,
    make_exp_dirs,
    mkdir_and_rename,
)
from basicsr.utils.options import copy_opt_file, dict2str, parse_options

from .checkpoints import check_keep, find_resume_state, prune_checkpoints, remove_temporary_files
from .elastic import restart_count
from .rng_state import gather_rng, restore_rank_rng, rng_untouched


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def select_resume_state(opt: dict) -> tuple[dict | None, list[str]]:
    """Rank 0 picks the checkpoint to resume (validated); every rank loads that one.

    Sets ``opt['path']['resume_state']`` and, through basicsr's ``check_resume``, the network paths.

    Returns:
        tuple[dict | None, list[str]]: The training state (``None``: start anew) and warnings to log.
    """
    if opt['rank'] == 0:
        state, iteration, warnings = find_resume_state(opt)
        if iteration is not None and not (opt['path'].get('resume_state') and not opt['auto_resume']):
            opt['path']['resume_state'] = osp.join(opt['path']['training_states'], f'{iteration}.state')
        choice = [opt['path'].get('resume_state') if iteration is not None else None, iteration, warnings]
    else:
        choice = [None, None, None]
    if _distributed():
        dist.broadcast_object_list(choice, src=0)
    path, iteration, warnings = choice
    if iteration is None:
        opt['path']['resume_state'] = None
        return None, warnings
    opt['path']['resume_state'] = path
    if opt['rank'] != 0:
        state = torch.load(path, map_location='cpu')
    check_resume(opt, iteration)
    return state, warnings


def build_loaders(opt: dict, logger: logging.Logger) -> tuple:
    """The training loader with its :class:`ResumableSampler`, and the validation loaders."""
    train_loader, sampler, val_loaders = None, None, []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio, seed=opt['manual_seed'])
            train_loader = build_dataloader(
                train_set, dataset_opt, opt['num_gpu'], opt['dist'], sampler=sampler, seed=opt['manual_seed']
            )
            batches = len(train_loader)
            if batches == 0:
                raise TrainingError(
                    f'datasets.train: {len(sampler)} samples per process cannot fill one batch of '
                    f'{train_loader.batch_size} (lower batch_size_per_gpu or raise dataset_enlarge_ratio)'
                )
            total_iters = int(opt['train']['total_iter'])
            logger.info(
                'Training statistics:'
                f'\n\tNumber of train images: {len(train_set)}'
                f'\n\tDataset enlarge ratio: {ratio}'
                f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                f'\n\tWorld size (gpu number): {opt["world_size"]}'
                f'\n\tIterations per epoch: {batches}'
                f'\n\tTotal epochs: {math.ceil(total_iters / batches)}; iters: {total_iters}.'
            )
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(
                build_dataloader(val_set, dataset_opt, opt['num_gpu'], opt['dist'], None, opt['manual_seed'])
            )
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise TrainingError(f"datasets.{phase}: expected the phase 'train' or 'val*'")
    if train_loader is None:
        raise TrainingError('datasets.train is required for training')
    return train_loader, sampler, val_loaders


def start_epoch(loader, sampler: ResumableSampler, epoch: int, skip_batches: int, seed: int) -> None:
    """Position the sampler at ``skip_batches`` into ``epoch``; worker seeds come from a per-epoch generator
    rather than the global torch RNG (which the training state continues)."""
    sampler.set_epoch(epoch)
    sampler.set_start(skip_batches * loader.batch_size)
    loader.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_prefetcher(opt: dict, loader, logger: logging.Logger):
    mode = opt['datasets']['train'].get('prefetch_mode')
    if mode is None or mode == 'cpu':
        return CPUPrefetcher(loader)
    if mode == 'cuda':
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise TrainingError('datasets.train.prefetch_mode: cuda needs pin_memory: true')
        logger.info('Use cuda prefetch dataloader')
        return CUDAPrefetcher(loader, opt)
    raise TrainingError(f"datasets.train.prefetch_mode: expected null, 'cpu' or 'cuda', got {mode!r}")


def configure_determinism(opt: dict) -> None:
    """``train.deterministic: true`` trades cudnn autotuning for deterministic GPU kernels (see README)."""
    deterministic = bool(opt['train'].get('deterministic', False))
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def save_checkpoint(model, opt: dict, epoch: int, epoch_iter: int, current_iter: int) -> None:
    """Weights, then the training state with everything an exact resume needs (a collective call)."""
    extra = {'epoch_iter': epoch_iter, 'world_size': opt['world_size'], 'rng': gather_rng()}
    model.save(epoch, current_iter, extra)
    if opt['rank'] == 0:
        prune_checkpoints(opt, opt['logger'].get('keep_checkpoints'), current_iter)


def train_pipeline(root_path: str) -> None:
    """Train from ``-opt`` options as ``basicsr.train.train_pipeline`` does, resumably (see the module doc)."""
    opt, args = parse_options(root_path, is_train=True)
    prepare_options(opt, args.opt)  # numbers written as text, unknown keys of the plugin's sections
    opt['root_path'] = root_path
    restarts = restart_count()
    if restarts:
        opt['auto_resume'] = True
    configure_determinism(opt)
    check_keep(opt['logger'].get('keep_checkpoints'))

    resume_state, warnings = select_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(root_path, 'tb_logger', opt['name']))
    elif opt['rank'] == 0:
        remove_temporary_files(opt)
    _barrier()
    if opt['rank'] == 0:
        copy_opt_file(args.opt, opt['path']['experiments_root'])

    log_file = osp.join(opt['path']['log'], f'train_{opt["name"]}_{get_time_str()}.log')
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    if restarts:
        logger.info(f'Elastic restart {restarts}: resuming from the newest complete checkpoint.')
    for warning in warnings:
        logger.warning(warning)
    tb_logger = init_tb_loggers(opt)
    train_loader, sampler, val_loaders = build_loaders(opt, logger)
    total_iters = int(opt['train']['total_iter'])
    seed = opt['manual_seed']

    model = build_model(opt)
    epoch, epoch_iter, current_iter = 0, 0, 0
    if resume_state is not None:
        model.resume_training(resume_state)
        epoch, current_iter = resume_state['epoch'], resume_state['iter']
        epoch_iter = resume_state.get('epoch_iter', 0)
        if 'epoch_iter' not in resume_state:
            logger.warning('resume: the training state has no sampler position (basicsr): the epoch restarts')
        logger.info(f'Resuming training from epoch: {epoch}, iter: {current_iter}.')
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    start_epoch(train_loader, sampler, epoch, epoch_iter, seed)
    prefetcher = make_prefetcher(opt, train_loader, logger)
    if resume_state is not None and 'rng' in resume_state:
        restore_rank_rng(resume_state['rng'], opt['rank'])  # last: nothing above may draw afterwards

    logger.info(f'Start training from epoch: {epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    first_iter = current_iter + 1
    val_opt = opt.get('val')
    skip_batches = epoch_iter
    while current_iter < total_iters:
        start_epoch(train_loader, sampler, epoch, skip_batches, seed)
        prefetcher.reset()
        train_data = prefetcher.next()
        while train_data is not None and current_iter < total_iters:
            data_timer.record()
            current_iter += 1
            epoch_iter += 1
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == first_iter:
                msg_logger.reset_start_time()
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate()}
                log_vars.update(time=iter_timer.get_avg_time(), data_time=data_timer.get_avg_time())
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                save_checkpoint(model, opt, epoch, epoch_iter, current_iter)
            if val_opt is not None and current_iter % val_opt['val_freq'] == 0:
                validate(model, val_loaders, current_iter, tb_logger, val_opt, logger)
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()
        if current_iter < total_iters:
            epoch, epoch_iter, skip_batches = epoch + 1, 0, 0

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)
    if val_opt is not None:
        validate(model, val_loaders, current_iter, tb_logger, val_opt, logger)
    if tb_logger:
        tb_logger.close()


def validate(model, val_loaders: list, current_iter: int, tb_logger, val_opt: dict, logger: logging.Logger) -> None:
    """Validate on every loader without consuming the training run's random numbers."""
    if len(val_loaders) > 1:
        logger.warning('Multiple validation datasets are *only* supported by SRModel.')
    with rng_untouched():
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, val_opt['save_img'])
