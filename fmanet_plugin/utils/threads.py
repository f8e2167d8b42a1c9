"""How many intra-op CPU threads torch should use, decided at run time from the machine and the work size.

Why this matters: torch's CPU kernels run in OpenMP parallel regions (libgomp in the pip wheels) that end in a
barrier, so a step takes as long as its slowest thread. When another process holds a core, one of our threads
is descheduled for a scheduler time slice (milliseconds) while the others wait at the barrier (spinning first,
then sleeping). A large kernel hides that, but a small network runs thousands of short kernels per step (the
demo's stage-2 training step: ~24,000 operator calls, median 2 us) and every one of them can pay the wait.
Measured on the project's 2-core machine with other work running (load 4-9): the demo's stage-2 step took
0.67 s with one thread and 6-13 s with two (``OMP_WAIT_POLICY=PASSIVE``: 1.3 s; ``ACTIVE``: 13 s).

The rule (:func:`decide_num_threads`):

* ``cores``: CPUs this process may run on (``os.sched_getaffinity``), capped by a cgroup CPU quota.
* ``other_load``: cores kept busy by *other* processes, measured from ``/proc/stat`` over a short interval
  minus this process's own CPU time (falls back to the 1-minute load average where ``/proc/stat`` is missing).
* A thread is used only for a core that is at least 90 % free: ``floor(cores - other_load + 0.1)``, at least 1.
* Work size: each thread should get at least ``GRAIN`` (32768) elements of a typical activation (torch's own
  ``at::internal::GRAIN_SIZE``, below which its element-wise kernels stay on one thread anyway), i.e. at most
  ``work // GRAIN`` threads for ``work`` elements (e.g. batch x frames x LR pixels x channels).

An explicit ``OMP_NUM_THREADS`` in the environment always wins. :class:`ThreadGovernor` repeats the decision
every few seconds during a long run (load on a shared machine comes and goes).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

GRAIN = 32768  # activation elements per thread (torch's at::internal::GRAIN_SIZE)
FREE_FRACTION = 0.9  # a core counts as available when at least this fraction of it is idle


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path('/sys/fs/cgroup/cpu.max').read_text().split()[:2]
        if quota != 'max':
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _cpu_busy_seconds() -> float | None:
    """Busy CPU seconds since boot summed over the CPUs of this process's affinity mask (None without /proc)."""
    try:
        lines = Path('/proc/stat').read_text().splitlines()
        cpus = os.sched_getaffinity(0)
    except (OSError, AttributeError):
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith('cpu') and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf('SC_CLK_TCK')


class LoadMeter:
    """Cores kept busy by other processes between two readings (this process's own CPU time subtracted)."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[float, float | None, float]:
        return time.monotonic(), _cpu_busy_seconds(), time.process_time()

    def other_load(self) -> float:
        """Other processes' busy cores since the previous call (or construction)."""
        now = self._read()
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if busy0 is None or busy1 is None or t1 - t0 < 0.05:
            return max(0.0, os.getloadavg()[0] - 1) if hasattr(os, 'getloadavg') else 0.0
        return max(0.0, (busy1 - busy0 - (own1 - own0)) / (t1 - t0))


def decide_num_threads(cores: int, other_load: float, work: int | None = None) -> int:
    """Threads for ``work`` activation elements on ``cores`` CPUs of which ``other_load`` are busy elsewhere."""
    by_load = math.floor(cores - other_load + (1 - FREE_FRACTION))
    by_work = cores if work is None else work // GRAIN
    return max(1, min(cores, by_load, by_work))


def env_num_threads() -> int | None:
    """The thread count fixed by ``OMP_NUM_THREADS``, if the user set one."""
    value = os.environ.get('OMP_NUM_THREADS', '').split(',')[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_num_threads(work: int | None = None, interval: float = 0.25) -> tuple[int, str]:
    """(threads, reason) for the machine as it is now; samples the load for ``interval`` seconds."""
    fixed = env_num_threads()
    if fixed is not None:
        return fixed, f'OMP_NUM_THREADS={fixed}'
    meter = LoadMeter()
    time.sleep(interval)
    cores, other = usable_cores(), meter.other_load()
    threads = decide_num_threads(cores, other, work)
    work_note = '' if work is None else f', work {work} elements'
    return threads, f'{cores} usable cores, {other:.1f} busy with other processes{work_note}'


def set_num_threads(work: int | None = None, logger: logging.Logger | None = None) -> int:
    """Apply :func:`choose_num_threads` to torch (intra-op threads) and log the decision; returns the count."""
    threads, reason = choose_num_threads(work)
    torch.set_num_threads(threads)
    if logger is not None:
        logger.info(f'CPU threads: {threads} ({reason})')
    return threads


class ThreadGovernor:
    """Re-applies the rule every ``interval_s`` seconds of a long CPU run; call :meth:`step` once per iteration.

    Does nothing when ``OMP_NUM_THREADS`` is set. :meth:`step` never sleeps: it measures the load since the
    previous re-check.
    """

    def __init__(self, work: int | None = None, interval_s: float = 10.0, logger: logging.Logger | None = None):
        self.work, self.interval_s, self.logger = work, interval_s, logger
        self.enabled = env_num_threads() is None
        self.threads = set_num_threads(work, logger)
        self._meter = LoadMeter()
        self._next = time.monotonic() + interval_s

    def step(self) -> int:
        """Current thread count, re-decided if ``interval_s`` has passed since the last decision."""
        if not self.enabled or time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + self.interval_s
        other = self._meter.other_load()
        threads = decide_num_threads(usable_cores(), other, self.work)
        if threads != self.threads:
            torch.set_num_threads(threads)
            if self.logger is not None:
                self.logger.info(f'CPU threads: {self.threads} -> {threads} ({other:.1f} cores busy elsewhere)')
            self.threads = threads
        return self.threads
