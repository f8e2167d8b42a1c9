"""Per-phase accounting of an FMA-Net call: wall time and FLOPs of Net_D, Net_R, FGDF, attention and the rest.

Both implementations mark their phases with :func:`phase` (``net_d``, ``net_r``, ``fgdf`` for the down/up-sampling
with the dynamic filters, ``attention`` for the multi-attention blocks of the FRMA blocks). A marker does nothing
but return a shared null context unless a :class:`PhaseRecorder` is active, so it costs nothing measurable in
normal runs. Phases nest (an FRMA block's attention runs inside Net_D or Net_R): every second and every FLOP goes
to the innermost phase that is open, and what runs outside every phase is ``other``.

FLOPs are those ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions and matrix products; element-wise
ops, normalisations, softmax, warps and unfold are not counted), made by :func:`flop_counter`, which also counts the
in-place matrix products ``addmm_``/``baddbmm_`` (the fast executor's accumulating GEMMs) that torch's registry
leaves out, with torch's own formulas for ``addmm``/``baddbmm``. FGDF's per-pixel filters are ``einsum`` calls that
reach the counter as ``bmm``, so they are counted; :func:`fgdf_flops` gives the same multiply-adds analytically as
a check.

Example:
    >>> with flop_counter() as counter, PhaseRecorder(counter) as recorder:
    ...     model(lq, outputs=('output',))
    >>> recorder.result()['attention']  # {'seconds': ..., 'flops': ..., 'calls': ..., 'op_flops': {...}}
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

#: Phases in report order (``other``: everything outside the marked phases; ``backward``: marked by callers).
PHASES = ('net_d', 'net_r', 'fgdf', 'attention', 'backward', 'other')
LABELS = {
    'net_d': 'Net_D',
    'net_r': 'Net_R',
    'fgdf': 'FGDF',
    'attention': 'attention',
    'backward': 'backward',
    'other': 'other',
}
#: Prefix of the ``torch.profiler.record_function`` ranges an active recorder opens.
RANGE_PREFIX = 'phase:'

_active: PhaseRecorder | None = None
_NO_PHASE = contextlib.nullcontext()


def phase(name: str) -> contextlib.AbstractContextManager:
    """Mark the code in a ``with`` block as phase ``name``; a shared null context unless a recorder is active."""
    recorder = _active
    return _NO_PHASE if recorder is None else recorder.scope(name)


def flop_counter() -> torch.utils.flop_counter.FlopCounterMode:
    """A ``FlopCounterMode`` (no display) that also counts in-place ``addmm_`` and ``baddbmm_``.

    torch's registry has formulas for ``addmm`` and ``baddbmm`` only, so a plain counter sees none of the fast
    executor's accumulating products (``out.addmm_(a, b)``); they get the out-of-place formulas here.
    """
    from torch.utils import flop_counter as counter

    aten = torch.ops.aten
    inplace = {aten.addmm_: _as_raw(counter.addmm_flop), aten.baddbmm_: _as_raw(counter.baddbmm_flop)}
    return counter.FlopCounterMode(display=False, custom_mapping=inplace)


def _as_raw(formula: Callable) -> Callable:
    """A registered formula (already taking tensors and ``out_val``) marked so that the counter does not wrap it
    a second time."""

    def count(*args, **kwargs) -> int:
        return formula(*args, **kwargs)

    count._get_raw = True
    return count


@dataclass
class _Frame:
    name: str
    start: float
    start_flops: Counter
    child_seconds: float = 0.0
    child_flops: Counter = field(default_factory=Counter)


class PhaseRecorder:
    """Attributes wall time (and, with a counter, FLOPs) to the phases marked by :func:`phase` while active.

    Use as a context manager around one or more calls; one recorder may be active at a time, for calls made from one
    Python thread (the phases of threads running side by side would interleave). Each phase also opens
    a ``torch.profiler.record_function`` range ``phase:<name>``, so a profile taken meanwhile shows the phases.

    Args:
        flop_counter (FlopCounterMode | None): A counter, entered around the recorder, whose total is read at
            phase boundaries. Default: None (times only).
        synchronize (Callable | None): Called at every boundary before the clock is read (e.g.
            ``torch.cuda.synchronize`` for GPU work). Default: None (CPU).
    """

    def __init__(self, flop_counter=None, synchronize: Callable[[], None] | None = None) -> None:
        self.flop_counter, self.synchronize = flop_counter, synchronize
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, Counter] = defaultdict(Counter)  # per operator
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[_Frame] = []

    def __enter__(self) -> PhaseRecorder:
        global _active
        if _active is not None:
            raise RuntimeError('PhaseRecorder: another recorder is already active')
        _active = self
        self._stack = [self._open('other')]
        return self

    def __exit__(self, *exc_info) -> None:
        global _active
        try:
            self._close(self._stack.pop())
        finally:
            _active = None

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """The phase ``name`` (use :func:`phase`, which finds the active recorder)."""
        with torch.profiler.record_function(RANGE_PREFIX + name):
            self._stack.append(self._open(name))
            try:
                yield
            finally:
                self._close(self._stack.pop())

    def result(self) -> dict[str, dict]:
        """``{phase: {'seconds', 'flops', 'calls', 'op_flops'}}`` for every phase seen and ``total`` (their sums);
        ``op_flops``: ``{operator: FLOPs}``, e.g. ``{'convolution': ..., 'addmm_': ...}``."""
        out = {}
        for name in sorted(self.seconds, key=_order):
            ops = {op: int(n) for op, n in self.flops[name].items() if n}
            out[name] = {'seconds': self.seconds[name], 'flops': sum(ops.values()), 'calls': self.calls[name]}
            out[name]['op_flops'] = ops
        total_ops = sum((Counter(v['op_flops']) for v in out.values()), Counter())
        out['total'] = {
            'seconds': sum(v['seconds'] for v in out.values()),
            'flops': sum(v['flops'] for v in out.values()),
            'calls': 1,
            'op_flops': dict(total_ops),
        }
        return out

    def _now(self) -> tuple[float, Counter]:
        if self.synchronize is not None:
            self.synchronize()
        flops = Counter()
        if self.flop_counter is not None:
            for op, n in self.flop_counter.get_flop_counts().get('Global', {}).items():
                flops[getattr(op, '__name__', str(op))] += n
        return time.perf_counter(), flops

    def _open(self, name: str) -> _Frame:
        now, flops = self._now()
        return _Frame(name, now, flops)

    def _close(self, frame: _Frame) -> None:
        now, flops = self._now()
        seconds, count = now - frame.start, flops.copy()
        count.subtract(frame.start_flops)
        self.seconds[frame.name] += seconds - frame.child_seconds
        self.flops[frame.name].update(count)
        self.flops[frame.name].subtract(frame.child_flops)
        self.calls[frame.name] += 1
        if self._stack:
            self._stack[-1].child_seconds += seconds
            self._stack[-1].child_flops.update(count)


def _order(name: str) -> tuple[int, str]:
    return (PHASES.index(name) if name in PHASES else len(PHASES) - 1, name)


def fgdf_flops(config, batch: int, h: int, w: int, recon: bool = False) -> int:
    """Floating-point operations (2 per multiply-add) of FGDF for one call on ``(batch, t, c, h, w)`` LR frames.

    Upsampling: every one of the ``c * s^2`` outputs of an LR pixel sums ``t * k_r^2`` taps. Downsampling
    (``recon``, training): every LR pixel's ``c`` channels and the all-ones normaliser sum ``t * k_d^2`` taps.

    Args:
        config (FMANetConfig): The network's hyper-parameters.
        batch (int): Samples ``b``.
        h (int): LR height.
        w (int): LR width.
        recon (bool): Also count the downsampling of the re-synthesised LR frame. Default: False.
    """
    c, t, s = config.in_channels, config.num_seq, config.scale
    macs = batch * c * s * s * h * w * t * config.us_kernel_size**2
    if recon:
        macs += batch * (c + 1) * h * w * t * config.ds_kernel_size**2
    return 2 * macs


def self_times_by_phase(events) -> dict[str, dict[str, tuple[float, int]]]:
    """Self CPU seconds and calls of every operator, per phase, in a ``torch.profiler`` profile.

    Args:
        events: ``profile.events()`` of a profile taken while a :class:`PhaseRecorder` was active.

    Returns:
        dict[str, dict[str, tuple[float, int]]]: ``{phase: {operator: (self seconds, calls)}}``; operators outside
        every phase range under ``other``.
    """
    totals: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for event in events:
        if event.name.startswith(RANGE_PREFIX):
            continue
        parent, name = event.cpu_parent, 'other'
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX):
                name = parent.name[len(RANGE_PREFIX) :]
                break
            parent = parent.cpu_parent
        entry = totals[name][event.name]
        entry[0] += event.self_cpu_time_total / 1e6
        entry[1] += 1
    return {
        name: {op: (sec, n) for op, (sec, n) in ops.items()}
        for name, ops in sorted(totals.items(), key=lambda item: _order(item[0]))
    }


def ops_by_phase(times: dict[str, dict[str, tuple[float, int]]], top: int = 5) -> dict[str, list]:
    """The ``top`` operators with the most self CPU time per phase of :func:`self_times_by_phase`:
    ``{phase: [(operator, self seconds, calls), ...]}``, most time first."""
    return {
        name: sorted(((op, sec, n) for op, (sec, n) in ops.items()), key=lambda row: -row[1])[:top]
        for name, ops in times.items()
    }


def counted_op_rates(table: dict[str, dict], times: dict[str, dict[str, tuple[float, int]]]) -> dict[str, list]:
    """Per phase, each counted operator's FLOPs over the profiled self time of the kernels that run it.

    ``convolution`` is run by every profiled operator with ``conv`` in its name (``mkldnn_convolution``,
    ``slow_conv3d_forward``, ...); another counted operator ``op`` by ``aten::op``.

    Returns:
        dict[str, list]: ``{phase: [(operator, FLOPs, seconds), ...]}``, most FLOPs first.
    """
    rates = {}
    for name, row in table.items():
        ops = times.get(name, {})
        rows = []
        for op, flops in row.get('op_flops', {}).items():
            if op == 'convolution':
                seconds = sum(sec for kernel, (sec, _) in ops.items() if 'conv' in kernel)
            else:
                seconds = ops.get(f'aten::{op}', (0.0, 0))[0]
            rows.append((op, flops, seconds))
        if rows:
            rates[name] = sorted(rows, key=lambda r: -r[1])
    return rates


def format_phases(phases: dict[str, dict], sgemm_gflops: float) -> list[str]:
    """Markdown rows: per phase and in total, time, share, GFLOP, GFLOP/s and its share of ``sgemm_gflops``."""
    lines = ['| phase | calls | time s | share | GFLOP | GFLOP/s | % of SGEMM |', '|---|---|---|---|---|---|---|']
    total = phases['total']['seconds']
    for name, row in phases.items():
        rate = row['flops'] / 1e9 / row['seconds'] if row['seconds'] > 0 else 0.0
        label = '**total**' if name == 'total' else LABELS.get(name, name)
        lines.append(
            f'| {label} | {row["calls"]} | {row["seconds"]:.2f} | {row["seconds"] / max(total, 1e-12):.0%} | '
            f'{row["flops"] / 1e9:.1f} | {rate:.1f} | {rate / sgemm_gflops:.0%} |'
        )
    return lines


def combine_phases(timed: dict[str, dict], counted: dict[str, dict]) -> dict[str, dict]:
    """Seconds and calls of a timed run with the FLOPs of a counted run of the same call (``result()`` dicts)."""
    names = sorted(set(timed) - {'total'} | set(counted) - {'total'}, key=_order) + ['total']
    empty = {'seconds': 0.0, 'flops': 0, 'calls': 0}
    return {
        name: {
            'seconds': timed.get(name, empty)['seconds'],
            'calls': timed.get(name, empty)['calls'],
            'flops': counted.get(name, empty)['flops'],
            'op_flops': counted.get(name, {}).get('op_flops', {}),
        }
        for name in names
    }


def profile_phases(
    step: Callable[[], object],
    timed: dict[str, dict],
    sgemm_gflops: float,
    fgdf_analytic: int | None = None,
    top_ops: int = 0,
    synchronize: Callable[[], None] | None = None,
) -> dict:
    """Complete the phase times of a timed ``step()`` with FLOPs (one counted call) and, if ``top_ops``, operators.

    Args:
        step (Callable): Runs the measured call once more (its result is dropped).
        timed (dict): ``PhaseRecorder.result()`` of the timed call.
        sgemm_gflops (float): The SGEMM rate to compare with, measured in the same process.
        fgdf_analytic (int | None): :func:`fgdf_flops` of the call, printed as a check. Default: None.
        top_ops (int): Operators listed per phase from one more, profiled call (0: none). Default: 0.
        synchronize (Callable | None): See :class:`PhaseRecorder`. Default: None.

    Returns:
        dict: ``table`` (:func:`combine_phases`), ``sgemm_gflops``, ``fgdf_analytic_flops`` and, with ``top_ops``,
        ``ops`` (:func:`ops_by_phase`).
    """
    with flop_counter() as counter, PhaseRecorder(counter, synchronize) as recorder:
        step()
    report = {
        'table': combine_phases(timed, recorder.result()),
        'sgemm_gflops': sgemm_gflops,
        'fgdf_analytic_flops': fgdf_analytic,
    }
    if top_ops:
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as prof, PhaseRecorder(synchronize=synchronize):
            step()
        times = self_times_by_phase(prof.events())
        report['ops'] = ops_by_phase(times, top_ops)
        report['op_rates'] = counted_op_rates(report['table'], times)
    return report


def format_phase_report(report: dict, title: str) -> list[str]:
    """Markdown lines of a :func:`profile_phases` report: a caption, the phase table and the top operators."""
    table = report['table']
    fgdf = table.get('fgdf', {}).get('flops', 0) / 1e9
    analytic = report['fgdf_analytic_flops']
    check = f'analytic {analytic / 1e9:.2f}' if analytic is not None else 'no analytic count'
    lines = [
        f'{title}: SGEMM {report["sgemm_gflops"]:.0f} GFLOP/s measured in the same process after the timed call; '
        'time from the timed call, FLOPs from FlopCounterMode in one more call (convolutions and matrix products; '
        'element-wise ops, softmax, norms, warps and unfold are not counted). '
        f'FGDF: counted {fgdf:.2f} GFLOP ({check}; its einsum reaches the counter as bmm).',
        '',
        *format_phases(table, report['sgemm_gflops']),
    ]
    if report.get('ops'):
        lines += [
            '',
            '| phase | top operators by self CPU time (profiled call): s (calls) '
            '| counted operators: GFLOP, profiled s, GFLOP/s (% of SGEMM) |',
            '|---|---|---|',
        ]
        rates = report.get('op_rates', {})
        for name, ops in report['ops'].items():
            listed = ', '.join(f'{op} {sec:.2f} ({n})' for op, sec, n in ops)
            counted = ', '.join(
                f'{op} {flops / 1e9:.1f}, {sec:.2f} s, {_rate(flops, sec):.0f} '
                f'({_rate(flops, sec) / report["sgemm_gflops"]:.0%})'
                for op, flops, sec in rates.get(name, [])
            )
            lines.append(f'| {LABELS.get(name, name)} | {listed} | {counted} |')
    return lines


def _rate(flops: int, seconds: float) -> float:
    return flops / 1e9 / seconds if seconds > 0 else 0.0
