"""The cost of one network forward: parameters, MACs, latency and peak memory, per output frame.

Used by ``tools/benchmark.py`` for every compared model (built-in architectures and trained runs alike).

* Parameters: ``sum(p.numel())``. MACs: ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 for one forward;
  torchvision's ``deform_conv2d`` is counted like the convolution it performs (its bilinear sampling is not),
  ``grid_sample`` and interpolation are not counted.
* Latency: ``warmup`` untimed forwards, then the median of ``runs`` timed ones (CUDA synchronised).
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the warm-up and timed forwards; on CPU the peak
  RSS (``VmHWM``) minus ``rss_before`` when given (the caller resets the peak before building the model).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from fmanet_plugin.utils.runtime import rss_kb

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the convolution inside ``torchvision::deform_conv2d`` (2 per multiply-accumulate)."""
    return 2 * int(np.prod(out_shape)) * int(np.prod(weight_shape[1:]))


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op elsewhere) so that wall-clock times cover the forward."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure_cost(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    lq: torch.Tensor,
    device: torch.device,
    warmup: int,
    runs: int,
    rss_before: int | None = None,
) -> dict:
    """Measure ``forward(lq)``, per output frame.

    Args:
        model (nn.Module): The network ``forward`` runs (its parameters are counted).
        forward (Callable): Adapter ``(b, t, c, h, w) -> (b, n_out, c, 4h, 4w)``.
        lq (Tensor): Input of shape (b, t, c, h, w), on ``device``.
        device (torch.device): Where ``forward`` runs.
        warmup (int): Untimed forwards before the timed ones.
        runs (int): Timed forwards; their median is reported.
        rss_before (int | None): CPU only: the RSS (kB) before the model was built, with the peak RSS reset at
            that moment. None leaves CPU peak memory unmeasured (another model may have set the peak).

    Returns:
        dict: ``load_average`` (1-minute, when the measurement started: other processes skew CPU latencies),
        ``params_m``, ``gmacs_per_frame``, ``latency_ms_per_frame`` and, when measured, ``peak_mem_mb``.
    """
    cost = {'load_average': os.getloadavg()[0]}
    cost['params_m'] = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.no_grad():
        custom = {torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_flop}
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            out_frames = forward(lq).shape[1]
        cost['gmacs_per_frame'] = counter.get_total_flops() / 2 / out_frames / 1e9
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            forward(lq)
        times = []
        for _ in range(runs):
            synchronize(device)
            start = time.perf_counter()
            forward(lq)
            synchronize(device)
            times.append(time.perf_counter() - start)
    cost['latency_ms_per_frame'] = statistics.median(times) * 1000 / out_frames
    if device.type == 'cuda':
        cost['peak_mem_mb'] = torch.cuda.max_memory_allocated(device) / 2**20
    elif rss_before is not None:
        cost['peak_mem_mb'] = (rss_kb('VmHWM') - rss_before) / 1024
    return cost
