"""Speed and memory of FMA-Net's fast implementation against the reference, on the same weights and inputs.

Cases (the released configuration: T = 3, x4, dim 90, ...):

* ``inference``: ``model(lq, outputs=('output',))`` without autograd, LR ``--size`` (default 180x320, one
  720x1280 output frame).
* ``train``: one stage-2 training step, forward with ``gt`` and backward of the released stage-2 loss
  (``FMANetObjective``), LR ``--train-size`` (default 64x64), batch ``--batch`` (default 2). No optimiser step.

Threads: each child applies the package's run-time rule (``fmanet_plugin.utils.threads``: one thread per core
that is at least 90 % free of other processes, at most one per 32768 activation elements), as
``tools/inference.py`` does, unless ``--threads`` or ``OMP_NUM_THREADS`` fixes the count; the report gives each
child's count and the cores kept busy by other processes during its timed call.

``--background-load N`` reproduces a busy machine: before each measured child it starts N competing CPU-bound
processes, each a single-threaded loop of 256x256 float32 matrix products (numpy with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set to 1 in the loops' environment only), waits until every loop
runs, and stops them (SIGTERM, then SIGKILL) when the child ends, identically for both implementations. The report
gives the loops' own rate (GFLOP/s per loop while the child ran) and the 1-minute load average at the child's end.

``--tile`` runs the inference case through ``fmanet_plugin.utils.tiling.tiled_forward`` (as ``tools/inference.py
--tile``); ``--impls fast`` measures one implementation only (e.g. a 1280x720 input, too large for the reference
here).

Every measurement runs in its own child process, so the peak RSS (``VmHWM`` of the child) is that of one
implementation only. Both implementations of a case run under the same allocator settings; ``--allocators``
picks them: ``default`` (glibc's defaults) and ``tuned`` (``MALLOC_MMAP_THRESHOLD_`` set to
``--mmap-threshold`` bytes in the children's environment, so that large buffers are recycled instead of being
mapped and zero-filled anew). The tool sets nothing in its own process and nothing else.

Reported per case: wall time (best of ``--repeats``, reference and fast alternating), CPU time, minor page
faults, peak RSS (maximum over the repeats) and its increase over the RSS just before the measured call, the
max abs difference between the two implementations (output; in training also the loss and every gradient),
the ratios, FLOPs (``torch.utils.flop_counter`` with the in-place ``addmm_``/``baddbmm_`` added, counted at the
measured size on fake tensors, i.e. on shapes only, tiles included under ``--tile``) and the achieved GFLOP/s next
to the machine's measured SGEMM rate.

``--phases`` also splits every child's timed call into Net_D, Net_R, FGDF (the dynamic-filter down/up-sampling),
attention (the FRMA blocks' multi-attention blocks), backward (training) and other, with the markers of
``fmanet_plugin.utils.phase_profile``: per phase the wall time of the timed call, the FLOPs that
``FlopCounterMode`` counts in one more (untimed) call at the measured size, and the GFLOP/s against the SGEMM rate
measured in the same child right after its timed call (same threads, same background load). ``--phase-ops N``
adds one profiled call (``torch.profiler``) and lists each phase's N operators with the most self CPU time.

Examples:
    python tools/benchmark_speed.py                                   # both cases, both allocator settings
    python tools/benchmark_speed.py --cases inference --allocators default --repeats 3
    python tools/benchmark_speed.py --size 90x160 --cases inference --json results/speed.json
    python tools/benchmark_speed.py --size 90x160 --cases inference --background-load 2
    python tools/benchmark_speed.py --size 720x1280 --cases inference --allocators default --impls fast --tile 256
    python tools/benchmark_speed.py --size 90x160 --cases inference --allocators default --phases --phase-ops 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmanet_plugin.utils.atomic_io import atomic_write_text
from fmanet_plugin.utils.cli import parse_choices, size_type
from fmanet_plugin.utils.errors import main_entry

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ('reference', 'fast')
# (target speed-up, target memory fraction) per case and allocator setting, from the performance issue
TARGETS = {
    ('inference', 'default'): (2.5, 1 / 3),
    ('inference', 'tuned'): (1.3, 1 / 3),
    ('train', 'default'): (1.25, 1 / 2),
    ('train', 'tuned'): (1.25, 1 / 2),
}
# The released stage-2 loss weighting is read from the training options (``train`` section).
STAGE2_OPTIONS = ROOT / 'options' / 'fmanet_stage2.yml'
LOAD_LOOP = ROOT / 'tools' / 'cpu_load_loop.py'
parse_size = size_type(minimum=5)


def stage2_train_opt(path: str | Path = STAGE2_OPTIONS) -> dict:
    """The ``train`` section (loss terms and weights) of a BasicSR option file."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    if 'train' not in opt:
        raise ValueError(f'{path}: no train section (the loss weights)')
    return dict(opt['train'])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cases', default='inference,train', help='comma-separated: inference, train')
    parser.add_argument('--allocators', default='default,tuned', help='comma-separated: default, tuned')
    parser.add_argument('--mmap-threshold', type=int, default=2**32, help='MALLOC_MMAP_THRESHOLD_ of "tuned"')
    parser.add_argument('--size', type=parse_size, default=(180, 320), help='LR size of the inference case')
    parser.add_argument('--train-size', type=parse_size, default=(64, 64), help='LR size of the training case')
    parser.add_argument('--batch', type=int, default=2, help='batch of the training case')
    parser.add_argument('--repeats', type=int, default=1, help='runs per implementation (best time is kept)')
    parser.add_argument('--threads', type=int, help='torch threads in the children (default: the run-time rule)')
    parser.add_argument('--impls', default='reference,fast', help='comma-separated: reference, fast')
    parser.add_argument('--tile', type=int, default=0, help='inference: LR tile size (0 = whole frames)')
    parser.add_argument('--tile-overlap', type=int, default=16, help='inference: tile overlap in LR pixels')
    parser.add_argument(
        '--background-load', type=int, default=0, help='competing single-threaded matmul loops beside each child'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--ckpt', help='plugin checkpoint (params_ema, else params) instead of seeded random weights')
    parser.add_argument('--warmup', type=int, default=0, help='untimed runs before the timed one (per child)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    parser.add_argument('--amp', choices=('bf16', 'fp16'), help='autocast dtype of the timed runs (fp32 if unset)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model (use --warmup 1)')
    parser.add_argument('--accuracy', action='store_true', help='also report fp16/bf16 autocast vs fp32')
    parser.add_argument('--accuracy-size', type=parse_size, default=(64, 96), help='LR size of --accuracy')
    parser.add_argument(
        '--accuracy-dtypes', default='bf16,fp16', help='autocast dtypes of --accuracy (comma-separated)'
    )
    parser.add_argument('--phases', action='store_true', help='time, FLOPs and SGEMM share per phase (per child)')
    parser.add_argument('--phase-ops', type=int, default=0, help='with --phases: top operators per phase (profiled)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: JSON spec of one child measurement
    parser.add_argument('--load-loop', action='store_true', help=argparse.SUPPRESS)  # internal: one loop process
    args = parser.parse_args(argv)
    args.phases = args.phases or args.phase_ops > 0
    args.network = {}  # FMANet arguments other than the released ones (tests use a tiny network)
    args.cases = parse_choices(args.cases, ('inference', 'train'), '--cases')
    args.allocators = parse_choices(args.allocators, ('default', 'tuned'), '--allocators')
    args.accuracy_dtypes = parse_choices(args.accuracy_dtypes, ('bf16', 'fp16'), '--accuracy-dtypes')
    args.impls = parse_choices(args.impls, IMPLS, '--impls')
    if args.repeats < 1 or args.batch < 1 or (args.threads is not None and args.threads < 1):
        parser.error('--repeats, --batch and --threads must be positive')
    if args.background_load < 0 or args.tile < 0 or (args.tile and not 0 <= args.tile_overlap < args.tile):
        parser.error('--background-load and --tile must be >= 0, and 0 <= --tile-overlap < --tile')
    if args.phases and args.compile:
        parser.error('--phases times eager phases; it cannot be combined with --compile')
    return args


# ----------------------------------------------------------------------------------------------- child process


def run_worker(spec: dict) -> None:
    """Build one implementation, run one case (after ``warmup`` untimed runs), write timings, memory, outputs.

    ``spec`` may carry ``network`` (``FMANet`` arguments other than the released ones), ``train_options`` (the
    option file whose loss weights the training case uses; default ``options/fmanet_stage2.yml``), ``phases``
    and ``phase_ops`` (``--phases``, ``--phase-ops``) and ``sgemm_size`` (of the child's SGEMM rate; default 2048).
    """
    import fmanet_plugin  # noqa: F401  (registers the plugin; installs the basicsr compatibility shim)
    from fmanet_plugin.archs.fmanet_arch import FMANet
    from fmanet_plugin.utils.phase_profile import PhaseRecorder, phase
    from fmanet_plugin.utils.runtime import autocast_context, rss_kb
    from fmanet_plugin.utils.threads import LoadMeter, choose_num_threads
    from fmanet_plugin.utils.tiling import tiled_forward

    import torch

    device = torch.device(spec['device'])
    network = spec.get('network', {})
    h, w = spec['size']
    b = spec['batch']
    if spec.get('threads'):
        threads, thread_reason = spec['threads'], '--threads'
        torch.set_num_threads(threads)
    else:  # the package's run-time rule, as tools/inference.py applies it (OMP_NUM_THREADS wins)
        tile = spec.get('tile') or 0
        pixels = min(h * w, tile**2) if tile else h * w
        work = b * int(network.get('num_seq', 3)) * pixels * int(network.get('dim', 90))
        threads, thread_reason = choose_num_threads(work)
        torch.set_num_threads(threads)
    model = FMANet(impl=spec['impl'], **network)
    model.load_state_dict(torch.load(spec['weights'], map_location='cpu', weights_only=True))
    model.to(device)
    call = torch.compile(model) if spec['compile'] else model
    gen = torch.Generator().manual_seed(spec['seed'])
    lq = torch.rand(b, 3, 3, h, w, generator=gen)
    batch = {'lq': lq}
    if spec['case'] == 'train':
        from fmanet_plugin.losses.fmanet_loss import FMANetObjective

        batch['gt'] = torch.rand(b, 3, 3, 4 * h, 4 * w, generator=gen)
        batch['lq_sharp'] = torch.rand(b, 3, 3, h, w, generator=gen)
        batch['flow'] = torch.randn(b, 3, 2, h, w, generator=gen)
        objective = FMANetObjective(stage2_train_opt(spec.get('train_options', STAGE2_OPTIONS)), stage=2).to(device)
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> dict:
        with autocast_context(device, spec['amp']):
            if spec['case'] == 'inference':
                with torch.no_grad():
                    output = tiled_forward(
                        lambda x: call(x, outputs=('output',))['output'],
                        batch['lq'],
                        scale=4,
                        tile=spec.get('tile') or 0,
                        overlap=spec.get('tile_overlap', 16),
                    )
                    return {'output': output}
            model.zero_grad(set_to_none=True)
            outputs = call(batch['lq'], batch['gt'])
            loss = sum(objective(outputs, batch).values())
        with phase('backward'):
            loss.backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        return {'output': outputs['output'].detach(), 'loss': loss.detach(), 'grads': grads}

    model.train(spec['case'] == 'train')
    for _ in range(spec['warmup']):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else None
    recorder = PhaseRecorder(synchronize=sync) if spec.get('phases') else contextlib.nullcontext()
    meter = LoadMeter()  # cores kept busy by other processes during the timed step
    before, usage0, start = rss_kb('VmRSS'), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with recorder:
        saved = step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    usage, peak_kb = resource.getrusage(resource.RUSAGE_SELF), rss_kb('VmHWM')
    other_load = meter.other_load()
    result = dict(
        wall=wall,
        threads=threads,
        thread_reason=thread_reason,
        other_load=other_load,
        user=usage.ru_utime - usage0.ru_utime,
        sys=usage.ru_stime - usage0.ru_stime,
        minflt=usage.ru_minflt - usage0.ru_minflt,
        peak_rss_mb=peak_kb / 1024,
        rss_before_mb=before / 1024,
        malloc_mmap_threshold=os.environ.get('MALLOC_MMAP_THRESHOLD_'),  # the allocator setting in effect
    )
    if device.type == 'cuda':
        result['gpu_peak_mb'] = torch.cuda.max_memory_allocated(device) / 2**20
    torch.save(_to_cpu_float(saved), spec['out'])
    del saved
    if spec.get('phases'):  # after the timed call and its memory readings
        result['phases'] = measure_phases(spec, step, recorder.result(), threads, model.config, sync)
    Path(spec['result']).write_text(json.dumps(result))


def measure_phases(spec: dict, step, timed: dict, threads: int, config, sync) -> dict:
    """``--phases`` in a child (after its timed call): see :func:`fmanet_plugin.utils.phase_profile.profile_phases`;
    the SGEMM rate is measured now, in this child."""
    from fmanet_plugin.utils.phase_profile import fgdf_flops, profile_phases

    h, w = spec['size']
    analytic = None if spec.get('tile') else fgdf_flops(config, spec['batch'], h, w, spec['case'] == 'train')
    rate = sgemm_gflops(threads, spec.get('sgemm_size', 2048))
    return profile_phases(step, timed, rate, analytic, spec.get('phase_ops', 0), sync)


def _to_cpu_float(tree):
    import torch

    if isinstance(tree, dict):
        return {k: _to_cpu_float(v) for k, v in tree.items()}
    return tree.detach().float().cpu() if torch.is_tensor(tree) else tree


def accuracy_report(args: argparse.Namespace, weights: Path) -> list[dict]:
    """Both implementations under fp16/bf16 autocast against the fp32 reference: max abs diff and PSNR of the
    output frame (inference at ``--accuracy-size``), in this process."""
    import math

    from fmanet_plugin.archs.fmanet_arch import FMANet
    from fmanet_plugin.utils.runtime import autocast_context

    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    lq = torch.rand(1, 3, 3, *args.accuracy_size, generator=torch.Generator().manual_seed(args.seed)).to(device)
    models = {}
    for impl in IMPLS:
        models[impl] = FMANet(impl=impl).eval().to(device)
        models[impl].load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    with torch.no_grad():
        truth = models['reference'](lq, outputs=('output',))['output'].float()
        rows = []
        for amp in [None, *args.accuracy_dtypes]:
            for impl in IMPLS:
                if amp is None and impl == 'reference':
                    continue
                try:
                    with autocast_context(device, amp):
                        out = models[impl](lq, outputs=('output',))['output'].float()
                except RuntimeError as err:  # e.g. fp16 convolutions not implemented on this CPU
                    rows.append({'dtype': amp or 'fp32', 'impl': impl, 'error': str(err).splitlines()[0]})
                    continue
                diff = (out - truth).abs()
                mse = float((diff**2).mean())
                psnr = 10 * math.log10(float(truth.max() - truth.min()) ** 2 / mse) if mse > 0 else math.inf
                rows.append({'dtype': amp or 'fp32', 'impl': impl, 'max_abs': float(diff.max()), 'psnr': psnr})
    return rows


# ---------------------------------------------------------------------------------------------- parent process


def child_env(allocator: str, threshold: int) -> dict:
    env = dict(os.environ)
    env.pop('MALLOC_MMAP_THRESHOLD_', None)
    if allocator == 'tuned':
        env['MALLOC_MMAP_THRESHOLD_'] = str(threshold)
    env.setdefault('PYTHONWARNINGS', 'ignore')
    return env


class BackgroundLoad:
    """``count`` competing processes (``tools/cpu_load_loop.py``) while the ``with`` block runs.

    Entering starts them and returns once every loop runs; leaving stops them (SIGTERM, SIGKILL after 10 s) and
    waits for them, so none survives the block. :attr:`report` then holds ``loops`` (started), ``alive_at_end``
    (still running when the block ended), ``pids``, ``loop_gflops`` (each loop's own rate over its lifetime) and
    ``loadavg_1min`` (at the block's end).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[subprocess.Popen] = []
        self.report: dict = {}

    def __enter__(self) -> BackgroundLoad:
        env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
        cmd = [sys.executable, str(LOAD_LOOP)]
        try:
            for _ in range(self.count):
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
            for proc in self.procs:
                if proc.stdout.readline().strip() != 'ready':
                    raise RuntimeError(f'{LOAD_LOOP}: a background loop did not start (exit code {proc.poll()})')
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.report = self._stop()

    def _stop(self) -> dict:
        loadavg = os.getloadavg()[0]
        alive = sum(proc.poll() is None for proc in self.procs)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        rates = []
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            done = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
            if done:
                rates.append(2 * done[-1]['size'] ** 3 * done[-1]['products'] / done[-1]['seconds'] / 1e9)
        pids = [proc.pid for proc in self.procs]
        return {'loops': self.count, 'alive_at_end': alive, 'pids': pids, 'loop_gflops': rates, 'loadavg_1min': loadavg}


def run_loaded_child(spec: dict, env: dict, background_load: int) -> dict:
    """:func:`run_child` with ``background_load`` competing loops beside it; the loops' report under ``background``."""
    with BackgroundLoad(background_load) as load:
        result = run_child(spec, env)
    return {**result, 'background': load.report}


def run_child(spec: dict, env: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{spec["impl"]} {spec["case"]} child failed:\n{proc.stderr[-4000:]}')
    return json.loads(Path(spec['result']).read_text())


def max_abs_diff(a: dict, b: dict) -> dict:
    """Max abs differences between the two implementations' saved results."""
    diffs = {'output': (a['output'] - b['output']).abs().max().item()}
    if 'loss' in a:
        diffs['loss'] = abs(float(a['loss']) - float(b['loss']))
        diffs['grads'] = max((a['grads'][k] - b['grads'][k]).abs().max().item() for k in a['grads'])
        scale = max(b['grads'][k].abs().max().item() for k in b['grads'])
        diffs['grads_rel_to_max'] = diffs['grads'] / max(scale, 1e-30)
    return diffs


def count_flops(
    case: str,
    size: tuple[int, int],
    batch: int,
    network: dict | None = None,
    impls: tuple[str, ...] = IMPLS,
    tile: int = 0,
    tile_overlap: int = 16,
) -> dict[str, int]:
    """FLOPs of the timed call of each implementation, at the measured ``size`` and ``batch``, counted on fake
    tensors: the call runs its operators on shapes only, without the memory of the call (at 180x320 about 10 s
    per implementation on 2 cores, a quarter of a real fast call). Under ``tile`` the tiled call is counted, each
    distinct tile shape once.

    The fast schedule's work per pixel depends on the size (the border ring of the composed kernel embedding,
    the halos of its row chunks), so a count at another size scaled by the pixels would be off. Neither
    implementation branches on tensor values (that would raise on fake tensors) and the schedule depends on
    shapes and budgets only, so the fake call runs the operators of the real one.
    """
    import warnings

    from fmanet_plugin.archs.fmanet_arch import FMANet
    from fmanet_plugin.losses.fmanet_loss import FMANetObjective
    from fmanet_plugin.utils.phase_profile import flop_counter
    from fmanet_plugin.utils.tiling import tiled_forward

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    h, w = size
    flops = {}
    for impl in impls:
        model = FMANet(impl=impl, **(network or {}))
        # the parameters stay real (they are only read); the inputs and every result are fake
        with FakeTensorMode(allow_non_fake_inputs=True) as fake, warnings.catch_warnings():
            # the fast path compares data pointers to detect aliasing; fake tensors share pointer 0, so it takes
            # the branch with a temporary buffer, whose products are the same
            warnings.filterwarnings('ignore', message='Accessing the data pointer of FakeTensor')
            lq = fake.from_tensor(torch.empty(batch, 3, 3, h, w))
            with flop_counter() as counter:  # FlopCounterMode, also counting the in-place addmm_
                if case == 'inference':
                    with torch.no_grad():
                        net = model.eval()
                        repeated = _CountPerShape(lambda x, net=net: net(x, outputs=('output',))['output'], counter)
                        tiled_forward(repeated, lq, scale=4, tile=tile, overlap=tile_overlap)
                    extra = repeated.flops
                else:
                    batch_ = {
                        'lq': lq,
                        'gt': fake.from_tensor(torch.empty(batch, 3, 3, 4 * h, 4 * w)),
                        'lq_sharp': fake.from_tensor(torch.empty(batch, 3, 3, h, w)),
                        'flow': fake.from_tensor(torch.empty(batch, 3, 2, h, w)),
                    }
                    outputs = model.train()(lq, batch_['gt'])
                    sum(FMANetObjective(stage2_train_opt(), stage=2)(outputs, batch_).values()).backward()
                    extra = 0
        flops[impl] = counter.get_total_flops() + extra
    return flops


class _CountPerShape:
    """``forward`` run once per distinct input shape under ``counter``; a repeated shape adds the FLOPs of its
    first call to ``flops`` and returns an empty output of the same shape."""

    def __init__(self, forward, counter) -> None:
        self.forward, self.counter, self.flops, self.seen = forward, counter, 0, {}

    def __call__(self, x):
        key = tuple(x.shape)
        if key in self.seen:
            flops, like = self.seen[key]
            self.flops += flops
            return like.new_empty(like.shape)
        before = self.counter.get_total_flops()
        out = self.forward(x)
        self.seen[key] = (self.counter.get_total_flops() - before, out)
        return out


def sgemm_gflops(threads: int, n: int = 2048) -> float:
    """Measured single-precision GEMM rate (best of 5, ``n x n`` matrices): the machine's practical peak."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(5))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}'


def run(args: argparse.Namespace) -> dict:
    """All measurements; the children's weights, outputs and results live in a temporary folder."""
    import torch

    threads = torch.get_num_threads()  # measuring sets --threads; a caller's setting is restored afterwards
    try:
        with tempfile.TemporaryDirectory(prefix='fmanet_speed_') as work:
            return _run(args, Path(work))
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, work: Path) -> dict:
    import fmanet_plugin  # noqa: F401
    from fmanet_plugin.archs.fmanet_arch import FMANet
    from fmanet_plugin.utils.checkpoint import read_state_dict
    from fmanet_plugin.utils.threads import usable_cores

    import torch
    from tqdm import tqdm

    weights = work / 'weights.pth'
    if args.ckpt:
        state, _ = read_state_dict(args.ckpt)  # params_ema, else params (fmanet_plugin.utils.checkpoint)
    else:
        torch.manual_seed(args.seed)
        state = FMANet(**args.network).state_dict()
    torch.save(state, weights)

    report = {
        'machine': machine(),
        'torch': torch.__version__,
        'threads': args.threads or 'run-time rule',
        'background_load': args.background_load,
        'tile': [args.tile, args.tile_overlap] if args.tile else None,
        'device': args.device,
        'amp': args.amp,
        'compile': args.compile,
        'warmup': args.warmup,
        'sgemm_gflops': sgemm_gflops(args.threads or usable_cores()),
        'cases': [],
    }
    if args.accuracy:
        report['accuracy'] = accuracy_report(args, weights)
    jobs = [(case, alloc) for case in args.cases for alloc in args.allocators]
    impls = [impl for impl in IMPLS if impl in args.impls]
    bar = tqdm(total=len(jobs) * args.repeats * len(impls), desc='benchmark', unit='run')
    for case, alloc in jobs:
        size, batch = (args.size, 1) if case == 'inference' else (args.train_size, args.batch)
        runs = {impl: [] for impl in impls}
        outputs = {}
        for repeat in range(args.repeats):
            order = impls if repeat % 2 == 0 else impls[::-1]  # alternate who runs first
            for impl in order:
                spec = {
                    'impl': impl,
                    'case': case,
                    'size': size,
                    'batch': batch,
                    'threads': args.threads,
                    'seed': args.seed,
                    'warmup': args.warmup,
                    'device': args.device,
                    'amp': args.amp,
                    'compile': args.compile,
                    'weights': str(weights),
                    'network': args.network,
                    'tile': args.tile if case == 'inference' else 0,
                    'tile_overlap': args.tile_overlap,
                    'phases': args.phases,
                    'phase_ops': args.phase_ops,
                    'out': str(work / f'{case}_{alloc}_{impl}.pt'),
                    'result': str(work / f'{case}_{alloc}_{impl}.json'),
                }
                runs[impl].append(run_loaded_child(spec, child_env(alloc, args.mmap_threshold), args.background_load))
                outputs[impl] = spec['out']
                bar.update()
        both = len(impls) == len(IMPLS)
        diff = max_abs_diff(*(torch.load(outputs[i], weights_only=True) for i in IMPLS)) if both else {}
        entry = {'case': case, 'allocator': alloc, 'size': list(size), 'batch': batch, 'diff': diff}
        for impl in impls:
            entry[impl] = {
                'wall': min(r['wall'] for r in runs[impl]),
                'walls': [r['wall'] for r in runs[impl]],
                'cpu': min(r['user'] + r['sys'] for r in runs[impl]),
                'sys': min(r['sys'] for r in runs[impl]),
                'minflt': min(r['minflt'] for r in runs[impl]),
                'peak_rss_mb': max(r['peak_rss_mb'] for r in runs[impl]),
                'gpu_peak_mb': max(r.get('gpu_peak_mb', 0) for r in runs[impl]),
                'rss_before_mb': min(r['rss_before_mb'] for r in runs[impl]),
                'malloc_mmap_threshold': runs[impl][0]['malloc_mmap_threshold'],
                'threads': [r['threads'] for r in runs[impl]],
                'thread_reasons': [r['thread_reason'] for r in runs[impl]],
                'other_load': [r['other_load'] for r in runs[impl]],
                'background': [r['background'] for r in runs[impl]],
            }
            if args.phases:  # those of the fastest run
                entry[impl]['phases'] = min(runs[impl], key=lambda r: r['wall'])['phases']
        if both:
            entry['speedup'] = entry['reference']['wall'] / entry['fast']['wall']
            entry['memory_fraction'] = entry['fast']['peak_rss_mb'] / entry['reference']['peak_rss_mb']
        report['cases'].append(entry)
    bar.close()
    for case in args.cases:
        size, batch = (args.size, 1) if case == 'inference' else (args.train_size, args.batch)
        tile = args.tile if case == 'inference' else 0
        flops = count_flops(case, size, batch, args.network, tuple(impls), tile, args.tile_overlap)
        for entry in report['cases']:
            if entry['case'] == case:
                for impl in impls:
                    entry[impl]['gflop'] = flops[impl] / 1e9
                    entry[impl]['gflops_per_s'] = flops[impl] / 1e9 / entry[impl]['wall']
    return report


def format_report(report: dict) -> str:
    lines = [
        f'Machine: {report["machine"]}; torch {report["torch"]}, threads: {report["threads"]}; '
        f'measured SGEMM {report["sgemm_gflops"]:.0f} GFLOP/s (without background loops)',
        f'Background load: {report["background_load"]} single-threaded matmul loop(s) beside each child; '
        f'tiles (size, overlap): {report["tile"] or "none"}',
        f'Device {report["device"]}, autocast {report["amp"] or "off (fp32)"}, compile {report["compile"]}, '
        f'warm-up runs {report["warmup"]}; GFLOP: FlopCounterMode count of the timed call at its size (on shapes)',
        '',
        '| case | allocator | impl | wall s | CPU s (sys) | minor faults | peak RSS MB (+ over start) '
        '| GFLOP | GFLOP/s | threads | busy elsewhere | loops GFLOP/s, load avg | speed-up | memory | max abs diff |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for e in report['cases']:
        speed_target, mem_target = TARGETS[(e['case'], e['allocator'])]
        for impl in IMPLS:
            if impl not in e:
                continue
            r = e[impl]
            ratio = diff = mem = ''
            threads = ','.join(str(t) for t in r['threads'])
            busy = ','.join(f'{v:.1f}' for v in r['other_load'])
            loops = '; '.join(
                '+'.join(f'{g:.1f}' for g in b['loop_gflops']) + f', {b["loadavg_1min"]:.1f}' for b in r['background']
            )
            if impl == 'fast' and 'speedup' in e:
                ok_speed = 'met' if e['speedup'] >= speed_target else 'NOT met'
                ok_mem = 'met' if e['memory_fraction'] <= mem_target else 'NOT met'
                ratio = f'{e["speedup"]:.2f}x (target {speed_target}x: {ok_speed})'
                diff = ', '.join(f'{k} {v:.1e}' for k, v in e['diff'].items())
                mem = f'{e["memory_fraction"]:.2f} (target {mem_target:.2f}: {ok_mem})'
            size = f'{e["size"][0]}x{e["size"][1]}' + (f' b{e["batch"]}' if e['case'] == 'train' else '')
            lines.append(
                f'| {e["case"]} {size} | {e["allocator"]} | {impl} | {r["wall"]:.1f} | '
                f'{r["cpu"]:.1f} ({r["sys"]:.1f}) | {r["minflt"]:,} | '
                f'{r["peak_rss_mb"]:.0f} (+{r["peak_rss_mb"] - r["rss_before_mb"]:.0f}) | '
                f'{r.get("gflop", 0):.0f} | {r.get("gflops_per_s", 0):.0f} | {threads} | {busy} | {loops} | '
                f'{ratio} | {mem} | {diff} |'
            )
    for e in report['cases']:
        for impl in IMPLS:
            if 'phases' in e.get(impl, {}):
                lines += ['', *format_phase_section(e, impl)]
    if report.get('accuracy'):
        lines += ['', '| autocast | impl | max abs diff vs fp32 reference | PSNR vs fp32 reference (dB) |']
        lines.append('|---|---|---|---|')
        for row in report['accuracy']:
            if 'error' in row:
                lines.append(f'| {row["dtype"]} | {row["impl"]} | not run: {row["error"]} | |')
            else:
                lines.append(f'| {row["dtype"]} | {row["impl"]} | {row["max_abs"]:.2e} | {row["psnr"]:.1f} |')
    return '\n'.join(lines)


def format_phase_section(entry: dict, impl: str) -> list[str]:
    """The ``--phases`` tables of one implementation in one case."""
    from fmanet_plugin.utils.phase_profile import format_phase_report

    r = entry[impl]
    size = f'{entry["size"][0]}x{entry["size"][1]}' + (f' b{entry["batch"]}' if entry['case'] == 'train' else '')
    title = (
        f'Phases of {entry["case"]} {size}, {impl}, {entry["allocator"]} allocator, {r["threads"][0]} thread(s), '
        f'{r["other_load"][0]:.1f} core(s) busy elsewhere'
    )
    lines = format_phase_report(r['phases'], title)
    if 'gflop' in r:  # two counts of the same call: on real tensors in the child, on fake ones for the main table
        counted = r['phases']['table']['total']['flops'] / 1e9
        lines.append(f'\nCounted in the child: {counted:.1f} GFLOP (main table, counted on shapes: {r["gflop"]:.1f}).')
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(json.loads(args.worker))
        return
    report = run(args)
    text = format_report(report)
    print(text)
    if args.json:
        atomic_write_text(json.dumps(report, indent=2), args.json)


if __name__ == '__main__':
    main_entry(main)
