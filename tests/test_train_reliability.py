"""Training reliability with real processes: kill -9 and exact resume (single process and 2-process gloo DDP),
damaged-checkpoint fallback, keep_checkpoints, elastic torchrun restarts, no orphans, divergence stops, and the
OpenMMLab path's kill/resume and strict checkpoint loading."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_NET

ROOT = Path(__file__).resolve().parents[1]
TOTAL, FREQ = 12, 4  # 5 batches per epoch in one process, 2 per rank in two: checkpoints mid- and end-of-epoch


@pytest.fixture(scope='module')
def workdir(tmp_path_factory) -> Path:
    """Tiny demo clips (3 clips x 5 frames, HR 64x64) in datasets/demo."""
    root = tmp_path_factory.mktemp('reliability')
    cmd = [sys.executable, str(ROOT / 'tools/make_demo_data.py'), '--out', str(root / 'datasets/demo')]
    subprocess.run(
        cmd + ['--num-clips', '3', '--val-clips', '1', '--num-frames', '5', '--height', '64', '--width', '64'],
        check=True,
    )
    return root


def write_opt(
    workdir: Path, name: str, *, train: dict | None = None, logger: dict | None = None, workers: int = 0
) -> Path:
    """A tiny stage-2 run: crops, flips and transposes on, validation every checkpoint."""
    opt = yaml.safe_load((ROOT / 'options/demo_stage2.yml').read_text())
    opt['name'] = name
    opt['network_g'].update(TINY_NET)
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=1)
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt['train'].update({'total_iter': TOTAL, **(train or {})})
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [6], 'gamma': 0.5}  # a decay mid-run
    opt['logger'].update({'print_freq': 1, 'save_checkpoint_freq': FREQ, 'keep_checkpoints': 2, **(logger or {})})
    opt['path']['pretrain_network_d'] = None
    opt['val']['val_freq'] = FREQ
    path = workdir / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def command(opt_path: Path, *args: str, nproc: int = 1, torchrun: tuple[str, ...] = ()) -> list[str]:
    if nproc == 1 and not torchrun:
        return [sys.executable, str(ROOT / 'tools/train.py'), '-opt', str(opt_path), *args]
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', f'--master_port={free_port()}']
    return cmd + [*torchrun, str(ROOT / 'tools/train.py'), '-opt', str(opt_path), '--launcher', 'pytorch', *args]


ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')


def run(workdir: Path, cmd: list[str], expect_ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def start(workdir: Path, cmd: list[str]) -> subprocess.Popen:
    log = open(workdir / f'popen_{time.monotonic_ns()}.log', 'w')
    return subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, 'the run ended before the awaited moment'
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


def experiment(workdir: Path, name: str) -> Path:
    return workdir / 'experiments' / name


def final_weights(workdir: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(experiment(workdir, name) / 'models' / 'net_g_latest.pth')['params']


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def resumed_from(log: str) -> int:
    line = next(line for line in log.splitlines() if 'Resuming training from epoch' in line)
    return int(line.rsplit('iter: ', 1)[1].rstrip('.'))


@pytest.fixture(scope='module')
def unbroken(workdir) -> dict[str, torch.Tensor]:
    run(workdir, command(write_opt(workdir, 'unbroken')))
    return final_weights(workdir, 'unbroken')


@pytest.fixture(scope='module')
def unbroken_ddp(workdir) -> dict[str, torch.Tensor]:
    proc = run(workdir, command(write_opt(workdir, 'unbroken_ddp'), nproc=2))
    assert 'World size (gpu number): 2' in proc.stdout + proc.stderr
    return final_weights(workdir, 'unbroken_ddp')


def test_kill_after_a_checkpoint_then_auto_resume_is_bit_exact(workdir, unbroken):
    # two data-loader worker processes here, none in the unbroken run: every sample's draws are its own
    opt_path = write_opt(workdir, 'killed', workers=2)
    states = experiment(workdir, 'killed') / 'training_states'
    proc = start(workdir, command(opt_path))
    wait_for(lambda: (states / f'{FREQ}.state').is_file(), proc)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert not (experiment(workdir, 'killed') / 'models' / 'net_g_latest.pth').exists()

    log = run(workdir, command(opt_path, '--auto_resume')).stderr
    assert FREQ <= resumed_from(log) < TOTAL
    assert max_difference(final_weights(workdir, 'killed'), unbroken) == 0.0
    # a mid-epoch checkpoint (iteration 4 of 5 per epoch) records its position in the epoch
    state = torch.load(states / f'{TOTAL}.state')
    assert (state['epoch'], state['epoch_iter']) == (2, 2) and len(state['rng']) == 1


def test_keep_checkpoints_keeps_the_newest(workdir, unbroken):
    root = experiment(workdir, 'unbroken')
    assert sorted(p.name for p in (root / 'training_states').iterdir()) == ['12.state', '8.state']
    assert sorted(p.name for p in (root / 'models').iterdir()) == ['net_g_12.pth', 'net_g_8.pth', 'net_g_latest.pth']


def test_damaged_newest_checkpoint_falls_back_with_one_warning(workdir, unbroken):
    import shutil

    opt_path = write_opt(workdir, 'damaged')
    shutil.copytree(experiment(workdir, 'unbroken'), experiment(workdir, 'damaged'))
    models = experiment(workdir, 'damaged') / 'models'
    (models / 'net_g_latest.pth').unlink()
    newest = models / f'net_g_{TOTAL}.pth'
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # killed mid-write (old savers)
    (models / f'.net_g_{TOTAL + FREQ}.pth.k1ll3d.pth').write_bytes(b'half')  # a killed atomic write
    log = run(workdir, command(opt_path, '--auto_resume')).stderr
    warnings = [line for line in log.splitlines() if 'is damaged' in line]
    assert len(warnings) == 1, log[-3000:]
    assert f'checkpoint of iteration {TOTAL} is damaged: {newest} cannot be loaded' in warnings[0]
    assert f'falling back to iteration {TOTAL - FREQ}' in warnings[0]
    assert resumed_from(log) == TOTAL - FREQ
    assert not list(models.glob('.*'))
    assert max_difference(final_weights(workdir, 'damaged'), unbroken) == 0.0


def test_ddp_kill_then_auto_resume_is_bit_exact(workdir, unbroken_ddp):
    opt_path = write_opt(workdir, 'killed_ddp')
    states = experiment(workdir, 'killed_ddp') / 'training_states'
    proc = start(workdir, command(opt_path, nproc=2))
    wait_for(lambda: (states / f'{FREQ}.state').is_file(), proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    log = run(workdir, command(opt_path, '--auto_resume', nproc=2)).stderr
    assert FREQ <= resumed_from(log) < TOTAL
    assert max_difference(final_weights(workdir, 'killed_ddp'), unbroken_ddp) == 0.0
    assert len(torch.load(states / f'{TOTAL}.state')['rng']) == 2  # both ranks' random states


def test_elastic_restart_after_a_worker_is_killed(workdir, unbroken_ddp):
    opt_path = write_opt(workdir, 'elastic')
    states = experiment(workdir, 'elastic') / 'training_states'
    proc = start(workdir, command(opt_path, nproc=2, torchrun=('--max-restarts=1',)))
    wait_for(lambda: (states / f'{FREQ}.state').is_file(), proc)
    workers = children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    assert proc.wait(timeout=300) == 0
    assert max_difference(final_weights(workdir, 'elastic'), unbroken_ddp) == 0.0
    logs = sorted(experiment(workdir, 'elastic').glob('train_elastic_*.log'))
    assert any('Elastic restart 1: resuming' in p.read_text() for p in logs)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        text = (task / 'children').read_text().split()
        found += [int(c) for c in text]
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        status = Path(f'/proc/{pid}/status').read_text()
    except FileNotFoundError:
        return False
    return '\nState:\tZ' not in status


def test_workers_exit_when_the_launcher_is_killed(workdir):
    opt_path = write_opt(workdir, 'orphans', train={'total_iter': 1000})
    proc = start(workdir, command(opt_path, nproc=2))
    log_dir = experiment(workdir, 'orphans')
    wait_for(lambda: any('iter:       2' in p.read_text() for p in log_dir.glob('*.log')), proc)
    workers = children(proc.pid)
    assert len(workers) == 2 and all(alive(w) for w in workers)
    proc.kill()  # SIGKILL: torchrun cannot clean up
    proc.wait()
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [w for w in workers if alive(w)]
    for w in survivors:
        os.kill(w, signal.SIGKILL)
    assert not survivors, 'workers outlived their launcher'


def test_exploding_update_stops_before_any_checkpoint(workdir):
    opt_path = write_opt(
        workdir, 'exploding', train={'optim_d': {'type': 'Adam', 'lr': 1e10}}, logger={'save_checkpoint_freq': 1}
    )
    proc = run(workdir, command(opt_path), expect_ok=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: iteration 1: the update of net_d is ')
    assert 'train.max_update_ratio: 1' in last and 'loss terms l_restoration=' in last and 'batch 00' in last
    assert 'Traceback' not in proc.stderr
    root = experiment(workdir, 'exploding')
    assert not list((root / 'models').iterdir()) and not list((root / 'training_states').iterdir())


# ---------------------------------------------------------------- in-process checks of the building blocks


def test_sample_draws_depend_only_on_the_sampler_key(workdir):
    from fmanet_plugin.data.resumable_sampler import ResumableSampler, SampleKey
    from fmanet_plugin.data.vsrdb_dataset import VSRDBDataset

    demo = workdir / 'datasets/demo'
    dataset = VSRDBDataset(
        dict(
            dataroot_lq=str(demo / 'train_blur_bicubic/X4'),
            dataroot_gt=str(demo / 'train_sharp'),
            dataroot_lq_sharp=str(demo / 'train_sharp_bicubic/X4'),
            dataroot_flow=str(demo / 'train_flow'),
            meta_info_file=str(demo / 'meta_info_train.txt'),
            gt_size=32,
            use_hflip=True,
            use_vflip=True,
            use_rot=True,
        )
    )
    import random

    random.seed(1)
    first = dataset[SampleKey(3, 12345)]
    state = random.getstate()
    random.seed(2)
    again = dataset[SampleKey(3, 12345)]
    assert random.getstate() != state  # the global state was left alone (it is the seed-2 state)
    for key in ('lq', 'gt', 'lq_sharp', 'flow'):
        assert torch.equal(first[key], again[key]), key
    others = [dataset[SampleKey(3, seed)] for seed in range(8)]
    assert any(not torch.equal(first['gt'], other['gt']) for other in others)  # the seed drives the crop/flip

    # two ranks, resumed mid-epoch: the keys continue exactly, and together cover the enlarged epoch once
    ranks = [ResumableSampler(dataset, 2, r, ratio=3, seed=7) for r in range(2)]
    full = []
    for sampler in ranks:
        sampler.set_epoch(4)
        keys = list(sampler)
        sampler.set_start(5)
        assert list(sampler) == keys[5:] and len(sampler) == len(keys) - 5
        sampler.set_epoch(4)
        assert len(sampler) == len(keys)
        full += keys
    assert len({k.seed for k in full}) == len(full) == 3 * len(dataset)
    assert sorted(k.index for k in full) == sorted(list(range(len(dataset))) * 3)


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    from fmanet_plugin.utils.atomic_io import atomic_torch_save

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('disk full')

    target = tmp_path / '8.state'
    atomic_torch_save({'iter': 4}, target)
    with pytest.raises(RuntimeError, match='disk full'):
        atomic_torch_save({'iter': 8, 'bad': Unpicklable()}, target)
    assert torch.load(target) == {'iter': 4} and [p.name for p in tmp_path.iterdir()] == ['8.state']


def fake_experiment(root: Path, iterations: list[int]) -> dict:
    from fmanet_plugin.utils.atomic_io import atomic_torch_save

    opt = {'network_g': {}, 'path': {'models': str(root / 'models'), 'training_states': str(root / 'states')}}
    for folder in opt['path'].values():
        Path(folder).mkdir(parents=True)
    for k in iterations:
        atomic_torch_save({'params': {'w': torch.full((2,), float(k))}}, root / 'models' / f'net_g_{k}.pth')
        atomic_torch_save({'iter': k, 'epoch': 0}, root / 'states' / f'{k}.state')
    return opt


def test_resume_skips_damaged_states_and_pruning_keeps_the_newest(tmp_path):
    from fmanet_plugin.train.checkpoints import find_resume_state, prune_checkpoints

    opt = fake_experiment(tmp_path, [2, 4, 6])
    newest = tmp_path / 'states' / '6.state'
    newest.write_bytes(newest.read_bytes()[:40])
    (tmp_path / 'states' / '4.state').write_bytes(b'')  # empty: killed right after creating it
    state, iteration, warnings = find_resume_state(opt)
    assert (iteration, state['iter']) == (2, 2) and len(warnings) == 2
    assert warnings[0].startswith(f'resume: checkpoint of iteration 6 is damaged: {newest} cannot be loaded (')
    assert warnings[0].endswith('; falling back to iteration 4') and '\n' not in warnings[0]

    opt = fake_experiment(tmp_path / 'prune', [2, 4, 6, 8])
    prune_checkpoints(opt, 1, newest=8)
    assert sorted(p.name for p in (tmp_path / 'prune' / 'states').iterdir()) == ['8.state']
    assert sorted(p.name for p in (tmp_path / 'prune' / 'models').iterdir()) == ['net_g_8.pth']


def test_nan_loss_and_nan_flow_are_named(workdir, tmp_path):
    from fmanet_plugin.data.vsrdb_reader import VSRDBReader
    from fmanet_plugin.train.update_guard import DivergenceError, UpdateGuard

    import numpy as np

    guard = UpdateGuard({'net_d': [torch.nn.Parameter(torch.ones(3))]}, 1.0)
    losses = {'l_recon': torch.tensor(0.5), 'l_flow': torch.tensor(float('nan'))}
    with pytest.raises(DivergenceError) as error:
        guard.check_losses(losses, 7, ['000/00000002', '001/00000003'])
    assert str(error.value) == (
        'iteration 7: loss term l_flow is nan (batch 000/00000002, 001/00000003); '
        'stopped before the update, nothing of this iteration is saved'
    )

    flow_dir = tmp_path / 'flow' / '000'
    flow_dir.mkdir(parents=True)
    flow = np.zeros((4, 4, 2), np.float32)
    flow[1, 2, 0] = np.inf
    np.save(flow_dir / '00000001_00000002.npy', flow)
    reader = VSRDBReader({'flow': str(tmp_path / 'flow')}, {'type': 'disk'}, 'png', 'VSRDBDataset')
    with pytest.raises(ValueError) as error:
        reader.flow('000', '00000001', '00000002', (4, 4))
    assert str(error.value) == f"VSRDBDataset: file '{flow_dir / '00000001_00000002.npy'}' holds 1 NaN/inf values"


# ---------------------------------------------------------------- the OpenMMLab path


def mm_command(workdir: Path, work_dir: str, name: str, max_iters: int, *args: str) -> list[str]:
    from test_mm import tiny_options

    config = ROOT / 'options/mm/demo_stage1.py'
    cmd = [sys.executable, str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(workdir / work_dir), *args]
    return cmd + tiny_options(workdir / 'datasets/demo', name, 1, max_iters)


def test_mm_kill_at_an_arbitrary_moment_then_resume_is_exact(workdir):
    run(workdir, mm_command(workdir, 'mm_unbroken', 'mm_unbroken', 12))
    proc = start(workdir, mm_command(workdir, 'mm_killed', 'mm_killed', 12))
    wait_for(lambda: (workdir / 'mm_killed' / 'iter_2.pth').is_file(), proc)
    time.sleep(random.uniform(0, 0.3))  # anywhere after the first checkpoint, also inside a later save
    proc.kill()
    assert proc.wait() == -signal.SIGKILL and not (workdir / 'mm_killed' / 'iter_12.pth').exists()
    run(workdir, mm_command(workdir, 'mm_killed', 'mm_resumed', 12, '--resume'))
    expected = torch.load(workdir / 'mm_unbroken' / 'iter_12.pth')['state_dict']
    resumed = torch.load(workdir / 'mm_killed' / 'iter_12.pth')['state_dict']
    assert max_difference(resumed, expected) == 0.0


def test_mm_refuses_a_checkpoint_of_another_size(workdir, tmp_path):
    from fmanet_plugin.archs.fmanet_arch import FMANet
    from fmanet_plugin.mm.restorer import FMANetRestorer
    from fmanet_plugin.mm.strict_loading import CheckpointMismatchError

    other = FMANet(stage=1, **{**TINY_NET, 'dim': 12})
    path = tmp_path / 'dim12.pth'
    torch.save({'state_dict': {f'generator.{k}': v for k, v in other.state_dict().items()}, 'meta': {}}, path)
    for option, kind in ((f'load_from={path}', 'load_from'), ('--resume', 'resume')):
        args = ['--resume', str(path)] if kind == 'resume' else []
        cmd = mm_command(workdir, f'mm_{kind}', f'mm_{kind}', 2, *args)
        if kind == 'load_from':
            cmd.append(option)
        proc = run(workdir, cmd, expect_ok=False)
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f'error: {kind}: {path} does not fit the configured network: ')
        assert 'tensor(s) differ in size (generator.net_d.' in last and '(12,' in last and '(6,' in last

    model = FMANetRestorer(
        generator=dict(type='fmanet_plugin.FMANet', stage=1, **TINY_NET), generator_checkpoint=str(path)
    )
    with pytest.raises(CheckpointMismatchError, match=r'^[^\n]* does not fit the configured network: \d+ tensor'):
        model.init_weights()
