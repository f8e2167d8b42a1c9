"""Checking BasicSR option trees when they are loaded: numbers written as text, and unknown keys.

* **Numbers.** YAML 1.1 (PyYAML, basicsr's loader) reads ``2e-4`` without a dot as a string, and basicsr's
  ``--force_yml train:optim_d:lr=1e10`` keeps ``1e10`` a string; :func:`coerce_numbers` turns such values into
  floats (not under names, paths and clip lists, which stay strings).
* **Unknown keys** in the plugin's sections (:func:`check_plugin_options`) are an error naming the section and
  suggesting the closest valid key: ``network_g`` of a plugin arch (its constructor's arguments), the options of
  the plugin's datasets (their ``OPTIONS`` attribute plus basicsr's loader keys), the ``train`` section of a
  model with a ``TRAIN_OPTIONS`` attribute, its loss terms (the loss class's arguments) and optimizers (the
  ``torch.optim`` class's arguments), and ``logger``. Components of other packages are left to them.
* **basicsr's own machinery**, whatever the model: ``train.scheduler`` (a type basicsr's
  ``BaseModel.setup_schedulers`` builds, with its class's arguments; required ones present) when the model
  keeps that method, and each ``val.metrics`` entry (a registered metric with its function's arguments, plus
  ``better``: ``higher`` or ``lower``). The ``val`` section itself is checked for models with a ``VAL_OPTIONS``
  attribute (the keys their training loop and validation read).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fmanet_plugin.utils.errors import UserInputError, check_keys, suggest

_SCIENTIFIC = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$')
_TEXT_KEYS = ('name', 'type', 'clips', 'exclude_clips', 'meta_info_file', 'path', 'filename_tmpl', 'filename_ext')

BASICSR_DATASET_KEYS = (
    'name',
    'type',
    'phase',
    'scale',
    'batch_size_per_gpu',
    'num_worker_per_gpu',
    'dataset_enlarge_ratio',
    'prefetch_mode',
    'pin_memory',
    'persistent_workers',
    'use_shuffle',
    'num_prefetch_queue',
)
LOGGER_KEYS = ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb', 'keep_checkpoints')
# ``type`` names basicsr's BaseModel.setup_schedulers accepts -> class name in basicsr.models.lr_scheduler
SCHEDULER_TYPES = {
    'MultiStepLR': 'MultiStepRestartLR',
    'MultiStepRestartLR': 'MultiStepRestartLR',
    'CosineAnnealingRestartLR': 'CosineAnnealingRestartLR',
}
# arguments of a metric function that calculate_metric fills from the images, not from the options
_METRIC_IMAGE_ARGS = ('img', 'img2')


def coerce_numbers(tree: Any, key: str = '') -> Any:
    """Return ``tree`` with strings in scientific notation (``'1e10'``, ``'2E-4'``) turned into floats, in place
    for dicts and lists; values of name/path/clip keys (and anything under them) are left as they are."""
    if key in _TEXT_KEYS or key.startswith('dataroot') or key.startswith('pretrain_network'):
        return tree
    if isinstance(tree, dict):
        for k in list(tree):
            tree[k] = coerce_numbers(tree[k], str(k))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            tree[i] = coerce_numbers(value, key)
    elif isinstance(tree, str) and _SCIENTIFIC.match(tree.strip()):
        return float(tree)
    return tree


def accepted_arguments(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up its bases; ``None`` if any."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass) or klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {'self'}
    return None


def check_arguments(options: Mapping, cls: type, where: str, ignore: Iterable[str] = ('type',)) -> None:
    """Raise a :class:`UserInputError` if ``options`` has a key that ``cls``'s constructor does not take."""
    accepted = accepted_arguments(cls)
    if accepted is not None:
        check_keys(options, accepted | set(ignore), where)


def required_arguments(cls: type) -> set[str]:
    """The keyword arguments without a default of ``cls``'s own constructor (``self`` excluded)."""
    params = inspect.signature(cls.__init__).parameters.values()
    required = {p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return required - {'self'}


def _registered(registry: Any, type_name: Any, where: str) -> type:
    try:
        return registry.get(type_name)
    except KeyError:
        raise UserInputError(
            f'{where}: type {type_name!r} is not registered{suggest(type_name, registry._obj_map)}'
        ) from None


def _from_plugin(cls: type) -> bool:
    return cls.__module__.startswith('fmanet_plugin.')


def check_plugin_options(opt: Mapping, source: str) -> None:
    """Check the keys of the plugin's sections of a BasicSR option tree (see the module docstring).

    Args:
        opt (Mapping): The options (after :func:`coerce_numbers`).
        source (str): The option file, for messages.

    Raises:
        UserInputError: Naming the file, the section and the unknown key, with the closest valid key.
    """
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

    for net_key in ('network_g', 'network_d'):
        net_opt = opt.get(net_key)
        if isinstance(net_opt, Mapping) and 'type' in net_opt:
            arch = _registered(ARCH_REGISTRY, net_opt['type'], f'{source}: {net_key}')
            if _from_plugin(arch):
                check_arguments(net_opt, arch, f'{source}: {net_key} ({net_opt["type"]})')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        if not isinstance(dataset_opt, Mapping) or 'type' not in dataset_opt:
            continue
        dataset = _registered(DATASET_REGISTRY, dataset_opt['type'], f'{source}: datasets.{phase}')
        if getattr(dataset, 'OPTIONS', None) is not None:
            valid = set(dataset.OPTIONS) | set(BASICSR_DATASET_KEYS)
            check_keys(dataset_opt, valid, f'{source}: datasets.{phase} ({dataset_opt["type"]})')
    model_type = opt.get('model_type')
    train_opt = opt.get('train')
    if model_type and isinstance(train_opt, Mapping):
        model = _registered(MODEL_REGISTRY, model_type, f'{source}: model_type')
        if getattr(model, 'TRAIN_OPTIONS', None) is not None:
            check_keys(train_opt, model.TRAIN_OPTIONS, f'{source}: train ({model_type})')
            for key, sub in train_opt.items():
                if not isinstance(sub, Mapping) or 'type' not in sub:
                    continue
                where = f'{source}: train.{key} ({sub["type"]})'
                if key.startswith('optim_'):
                    optimizer = getattr(torch.optim, str(sub['type']), None)
                    if optimizer is None:
                        names = [n for n in dir(torch.optim) if n[:1].isupper()]
                        raise UserInputError(f'{where}: not a torch.optim optimizer{suggest(sub["type"], names)}')
                    check_arguments(sub, optimizer, where, ignore=('type', 'params'))
                elif key.endswith('_opt'):
                    check_arguments(sub, _registered(LOSS_REGISTRY, sub['type'], where), where)
    if isinstance(opt.get('logger'), Mapping):
        check_keys(opt['logger'], LOGGER_KEYS, f'{source}: logger')
    model = _registered(MODEL_REGISTRY, model_type, f'{source}: model_type') if model_type else None
    if isinstance(train_opt, Mapping) and isinstance(train_opt.get('scheduler'), Mapping):
        check_scheduler(train_opt['scheduler'], model, f'{source}: train.scheduler')
    if isinstance(opt.get('val'), Mapping):
        check_val(opt['val'], model, f'{source}: val')


def check_scheduler(scheduler_opt: Mapping, model: type | None, where: str) -> None:
    """Check ``train.scheduler`` against the class basicsr's ``BaseModel.setup_schedulers`` builds for its type
    (skipped for a model that sets up its schedulers itself).

    Raises:
        UserInputError: For an unknown type, an unknown argument (closest one suggested) or a missing one.
    """
    from basicsr.models import lr_scheduler
    from basicsr.models.base_model import BaseModel

    if model is None or model.setup_schedulers is not BaseModel.setup_schedulers or 'type' not in scheduler_opt:
        return
    type_name = scheduler_opt['type']
    if type_name not in SCHEDULER_TYPES:
        raise UserInputError(
            f'{where}: type {type_name!r} is not a scheduler basicsr builds{suggest(type_name, SCHEDULER_TYPES)}'
            f' (one of {", ".join(SCHEDULER_TYPES)})'
        )
    scheduler = getattr(lr_scheduler, SCHEDULER_TYPES[type_name])
    where = f'{where} ({type_name})'
    check_arguments(scheduler_opt, scheduler, where, ignore=('type', 'optimizer'))
    missing = sorted(required_arguments(scheduler) - {'optimizer'} - set(scheduler_opt))
    if missing:
        raise UserInputError(f'{where}: option {missing[0]!r} is required')


def check_val(val_opt: Mapping, model: type | None, where: str) -> None:
    """Check the ``val`` section: its keys (models with ``VAL_OPTIONS``) and every ``metrics`` entry.

    Raises:
        UserInputError: For an unknown key or metric argument (closest one suggested), an unregistered metric
            type, a ``better`` other than ``higher`` / ``lower``, or a missing metric argument.
    """
    from basicsr.utils.registry import METRIC_REGISTRY

    if getattr(model, 'VAL_OPTIONS', None) is not None:
        check_keys(val_opt, model.VAL_OPTIONS, f'{where} ({model.__name__})')
    metrics = val_opt.get('metrics')
    if not isinstance(metrics, Mapping):
        return
    for name, metric_opt in metrics.items():
        entry = f'{where}.metrics.{name}'
        if not isinstance(metric_opt, Mapping) or 'type' not in metric_opt:
            raise UserInputError(f"{entry}: expected a mapping with a 'type' (e.g. type: calculate_psnr)")
        metric = _registered(METRIC_REGISTRY, metric_opt['type'], entry)
        entry = f'{entry} ({metric_opt["type"]})'
        params = inspect.signature(metric).parameters.values()
        # basicsr's metrics take **kwargs only to swallow the keys calculate_metric passes on ('better')
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        check_keys(metric_opt, (named - set(_METRIC_IMAGE_ARGS)) | {'type', 'better'}, entry)
        required = [p.name for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        missing = [n for n in required if n not in _METRIC_IMAGE_ARGS and n not in metric_opt]
        if missing:
            raise UserInputError(f'{entry}: option {missing[0]!r} is required')
        if metric_opt.get('better', 'higher') not in ('higher', 'lower'):
            raise UserInputError(f"{entry}: option 'better' must be 'higher' or 'lower', got {metric_opt['better']!r}")


def prepare_options(opt: dict, source: str) -> dict:
    """:func:`coerce_numbers` then :func:`check_plugin_options`; returns ``opt``."""
    coerce_numbers(opt)
    check_plugin_options(opt, source)
    return opt
