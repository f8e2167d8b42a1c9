"""What the tools set up before running a network: basicsr's logger, the device, autocast, the network itself,
and this process's memory figures."""

from __future__ import annotations

import contextlib
import logging
import resource
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import torch
from torch import nn

AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def build_network_from_opt(network_opt: Mapping[str, Any]) -> nn.Module:
    """Build a network from a BasicSR ``network_g``-style dict (``type`` + arguments) through ``ARCH_REGISTRY``.

    Raises:
        ValueError: If ``type`` is missing or not registered.
    """
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    opt = dict(deepcopy(network_opt))
    if 'type' not in opt:
        raise ValueError(f'network options need a "type" key (an ARCH_REGISTRY name), got keys {sorted(opt)}')
    if opt['type'] not in ARCH_REGISTRY:
        raise ValueError(f'network type {opt["type"]!r} is not registered in basicsr ARCH_REGISTRY')
    return build_network(opt)


def get_tool_logger(log_file: str | None = None) -> logging.Logger:
    """basicsr's root logger at INFO level (basicsr sets the level only when given a log file)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger(log_level=logging.INFO, log_file=log_file)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def resolve_device(name: str | None) -> torch.device:
    """``'auto'``/None -> CUDA if available else CPU; otherwise ``torch.device(name)`` (checked to exist)."""
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r} requested but CUDA is not available')
    return device


def autocast_context(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type for ``amp`` in {'fp16', 'bf16'}; a no-op context for ``None``.

    Raises:
        ValueError: For an unknown ``amp``.
    """
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AUTOCAST_DTYPES:
        raise ValueError(f"amp must be None, 'fp16' or 'bf16', got {amp!r}")
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[amp])


def rss_kb(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in KiB from /proc; ``ru_maxrss`` elsewhere.

    ``VmHWM`` rather than ``ru_maxrss`` in child processes: the latter carries the parent's peak over vfork/exec.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5) so imports do not hide a small model's peak."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
