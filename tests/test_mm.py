"""The OpenMMLab path (fmanet_plugin.mm): registries, data pipeline, Runner training/resume/validation, DDP, and
equivalence with the BasicSR path (dataset samples, stage-2 loss and update, validation metrics)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.data.vsrdb_dataset import VSRDBDataset as BasicSRVSRDBDataset
from fmanet_plugin.data.vsrdb_test_dataset import VSRDBTestDataset
from fmanet_plugin.metrics.tof_metric import calculate_tof
from fmanet_plugin.mm import TRANSFORMS
from fmanet_plugin.mm.augmentation import VSRDBRandomFlip
from fmanet_plugin.mm.data_preprocessor import FMANetDataPreprocessor
from fmanet_plugin.mm.image_metrics import PSNR, SSIM
from fmanet_plugin.mm.optim import FMANetOptimWrapperConstructor, step_networks
from fmanet_plugin.mm.restorer import FMANetRestorer
from fmanet_plugin.mm.tof import TOF
from fmanet_plugin.mm.train import main as train_main
from fmanet_plugin.models.fmanet_model import FMANetModel
from fmanet_plugin.utils.official_ckpt import convert_official_state_dict

import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from conftest import TINY_NET, load_tool, network_opt
from mmengine.config import Config
from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from mmengine.registry import DATASETS, METRICS, MODELS, DefaultScope, Registry
from mmengine.structures import BaseDataElement
from test_losses import fixture_batch, released_train_opt

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'options' / 'mm'


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """Tiny tensors: one intra-op thread is several times faster than two on the shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    """Tiny demo clips: 3 clips x 5 frames, HR 64x64 (clips 000-001 train, 002 validation)."""
    demo = load_tool('make_demo_data')
    out = tmp_path_factory.mktemp('mm') / 'tiny'
    args = ['--out', str(out), *'--num-clips 3 --val-clips 1 --num-frames 5 --height 64 --width 64'.split()]
    return demo.make_demo_data(demo.parse_args(args))


def tiny_overrides(data_root: Path, name: str, stage: int, max_iters: int, **extra) -> dict:
    """Config overrides turning a demo config into a tiny, fast run on ``data_root``."""
    overrides = {f'model.generator.{k}': v for k, v in {'bias': False, **TINY_NET}.items()}  # FMANet(**TINY_NET)
    overrides.update(
        {
            'experiment_name': name,  # one Runner per name in a process (logger, message hub)
            'train_dataloader.dataset.data_root': str(data_root),
            'train_dataloader.batch_size': 2,
            'train_dataloader.dataset.pipeline.1.gt_patch_size': 32,
            'train_cfg.max_iters': max_iters,
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.logger.interval': 1,
        }
    )
    if stage == 2:
        overrides.update({'val_dataloader.dataset.data_root': str(data_root), 'train_cfg.val_interval': max_iters})
    overrides.update(extra)
    return overrides


def tiny_options(*args, **kwargs) -> list[str]:
    """:func:`tiny_overrides` as ``--cfg-options`` arguments."""
    return ['--cfg-options'] + [f'{k}={v}' for k, v in tiny_overrides(*args, **kwargs).items()]


def tiny_config(data_root: Path, stage: int) -> Config:
    cfg = Config.fromfile(CONFIGS / f'demo_stage{stage}.py')
    cfg.merge_from_dict(tiny_overrides(data_root, 'unused', stage, 4, **{'model.net_d_checkpoint': None}))
    return cfg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_basicsr_path_does_not_import_mmengine():
    code = (
        'import sys, importlib.util\n'
        'import fmanet_plugin\n'
        f"spec = importlib.util.spec_from_file_location('train_tool', {str(ROOT / 'tools/train.py')!r})\n"
        'spec.loader.exec_module(importlib.util.module_from_spec(spec))\n'
        "assert 'mmengine' not in sys.modules and 'mmcv' not in sys.modules, 'BasicSR path imported OpenMMLab'\n"
    )
    run([sys.executable, '-c', code], ROOT)


def test_config_builds_every_component_through_registries(data_root):
    cfg = tiny_config(data_root, 2)
    model = MODELS.build(cfg.model)  # mmengine's root registry finds the fmanet_plugin scope
    assert type(model) is FMANetRestorer and type(model.generator) is FMANet  # the plugin's own network class
    assert isinstance(model.data_preprocessor, FMANetDataPreprocessor) and model.stage == 2
    assert set(model.objective.terms) == {
        'restoration',
        'recon',
        'hr_warp',
        'flow',
        'anchor_d',
        'lr_warp',
        'anchor_r',
    }

    train_sample = DATASETS.build(cfg.train_dataloader.dataset)[0]
    assert train_sample['inputs'].shape == (3, 3, 8, 8)
    sample = train_sample['data_samples']
    assert sample.gt.shape == (3, 3, 32, 32) and sample.lq_sharp.shape == (3, 3, 8, 8)
    assert sample.flow.shape == (3, 2, 8, 8) and not sample.flow[1].any()  # centre -> centre flow is zero
    val_set = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(val_set) == 5 and val_set[0]['inputs'].shape == (3, 3, 16, 16)
    assert val_set[0]['data_samples'].gt.shape == (3, 64, 64) and val_set[4]['data_samples'].frame_idx == 4

    metrics = [METRICS.build(m) for m in cfg.val_evaluator]
    assert [type(m) for m in metrics] == [PSNR, SSIM, TOF] and metrics[0].crop_border == 4

    wrappers = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrappers, OptimWrapperDict) and set(wrappers.keys()) == {'net_d', 'net_r'}
    for name in ('net_d', 'net_r'):
        optimized = {id(p) for group in wrappers[name].param_groups for p in group['params']}
        assert optimized == {id(p) for p in getattr(model.generator, name).parameters()}

    # another library's default scope (e.g. 'mmagic') resolves the scoped names through the root registry
    Registry('model', parent=MODELS, scope='fmanet_test_otherlib')
    with DefaultScope.overwrite_default_scope('fmanet_test_otherlib'):
        assert type(MODELS.build(dict(type='fmanet_plugin.FMANet', **TINY_NET))) is FMANet
        assert TRANSFORMS.get('fmanet_plugin.VSRDBRandomFlip') is VSRDBRandomFlip


def test_training_pipeline_reproduces_basicsr_dataset(data_root):
    """Same seed -> the same crop, flips/transpose and flow signs as BasicSR's VSRDBDataset."""
    cfg = tiny_config(data_root, 1)
    ours = DATASETS.build(cfg.train_dataloader.dataset)
    theirs = BasicSRVSRDBDataset(
        dict(
            dataroot_lq=str(data_root / 'train_blur_bicubic/X4'),
            dataroot_gt=str(data_root / 'train_sharp'),
            dataroot_lq_sharp=str(data_root / 'train_sharp_bicubic/X4'),
            dataroot_flow=str(data_root / 'train_flow'),
            meta_info_file=str(data_root / 'meta_info_train.txt'),
            num_frame=3,
            gt_size=32,
            use_hflip=True,
            use_vflip=True,
            use_rot=True,
        )
    )
    assert len(ours) == len(theirs) == 10
    for seed in range(8):
        random.seed(seed)
        sample = ours[seed]
        random.seed(seed)
        expected = theirs[seed]
        assert sample['data_samples'].key == expected['key']
        assert torch.equal(sample['inputs'], expected['lq'])
        for key in ('gt', 'lq_sharp', 'flow'):
            assert torch.equal(sample['data_samples'].get(key), expected[key]), (seed, key)


@pytest.mark.parametrize(
    'flips, expected_flow',
    [((True, False, False), (-1, 2)), ((False, True, False), (1, -2)), ((False, False, True), (2, 1))],
)
def test_flip_transforms_frames_and_flow_vectors(monkeypatch, flips, expected_flow):
    lr = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    hr = np.arange(16 * 24 * 3, dtype=np.float32).reshape(16, 24, 3)
    flow = np.broadcast_to(np.array([1, 2], np.float32), (4, 6, 2)).copy()
    monkeypatch.setattr(random, 'random', lambda: 0.0)  # every allowed flip happens
    out = VSRDBRandomFlip(*flips)(dict(lq=[lr], lq_sharp=[lr + 1], gt=[hr], flow=[flow]))
    hflip, vflip, transpose = flips
    want = lr[:, ::-1] if hflip else lr[::-1] if vflip else lr.transpose(1, 0, 2)
    np.testing.assert_array_equal(out['lq'][0], want)
    np.testing.assert_array_equal(out['lq_sharp'][0], want + 1)
    assert out['gt'][0].shape == ((24, 16, 3) if transpose else (16, 24, 3))
    assert out['flow'][0].shape[:2] == want.shape[:2] and (out['flow'][0] == np.array(expected_flow)).all()


def test_data_preprocessor_stacks_windows_and_rejects_other_shapes():
    pre = FMANetDataPreprocessor()
    out = pre({'inputs': [torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)], 'data_samples': None})
    assert out['inputs'].shape == (2, 3, 3, 4, 4)
    with pytest.raises(ValueError, match=r'\(b, t, c, h, w\)'):
        pre({'inputs': torch.rand(2, 3, 4, 4)})
    with pytest.raises(ValueError, match='one size'):
        pre({'inputs': [torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 8)]})


def test_tof_metric_orders_frames_per_clip_and_matches_calculate_tof():
    gen = torch.Generator().manual_seed(0)
    clips = {
        c: [(torch.rand(3, 64, 64, generator=gen), torch.rand(3, 64, 64, generator=gen)) for _ in range(3)]
        for c in 'ab'
    }
    samples = [dict(pred=p, gt=g, clip=c, frame_idx=i) for c, fr in clips.items() for i, (p, g) in enumerate(fr)]
    metric = TOF()
    metric.process(None, samples[::-1] + samples[:1])  # shuffled, one frame twice (sampler padding)
    expected = [calculate_tof([tensor2img(p) for p, _ in fr], [tensor2img(g) for _, g in fr]) for fr in clips.values()]
    assert metric.compute_metrics(metric.results)['tOF'] == pytest.approx(np.mean(expected), rel=1e-9)


@pytest.fixture(scope='module')
def stage1_checkpoint(data_root, tmp_path_factory) -> Path:
    """Stage 1 from the command line: tools/train.py hands a .py config to mmengine's Runner."""
    work = tmp_path_factory.mktemp('stage1')
    cmd = [sys.executable, str(ROOT / 'tools/train.py'), str(CONFIGS / 'demo_stage1.py'), '--work-dir', str(work)]
    log = run(cmd + tiny_options(data_root, 'cli_stage1', 1, 2), work)
    assert 'loss_recon' in log and 'loss_anchor_d' in log and 'Saving checkpoint at 2 iterations' in log
    return work / 'iter_2.pth'


def test_stage1_checkpoint_loads_weights_only_and_initialises_stage2_net_d(stage1_checkpoint, tmp_path):
    checkpoint = torch.load(stage1_checkpoint)  # torch's weights-only default (no unpickling of code)
    assert getattr not in torch.serialization.get_safe_globals()  # the allowlist stays narrow
    assert checkpoint['meta']['iter'] == 2 and set(checkpoint['optimizer']) == {'net_d'}
    state = checkpoint['state_dict']
    assert state and all(k.startswith('generator.net_d.') for k in state)
    model = FMANetRestorer(
        generator=dict(type='fmanet_plugin.FMANet', **TINY_NET), net_d_checkpoint=str(stage1_checkpoint)
    )
    model.init_weights()
    for key, value in model.generator.net_d.state_dict().items():
        assert torch.equal(value, state[f'generator.net_d.{key}']), key


def val_scores(runner) -> dict[str, float]:
    return {name: runner.message_hub.get_scalar(f'val/{name}').current() for name in ('PSNR', 'SSIM', 'tOF')}


def test_stage2_trains_validates_and_resumes_exactly(data_root, stage1_checkpoint, tmp_path):
    config = str(CONFIGS / 'demo_stage2.py')

    def options(name: str) -> list[str]:
        return tiny_options(data_root, name, 2, 4, **{'model.net_d_checkpoint': stage1_checkpoint})

    work = tmp_path / 'stage2'
    scores = val_scores(train_main([config, '--work-dir', str(work), *options('stage2')]))
    final = torch.load(work / 'iter_4.pth')

    # validation numbers = BasicSR's dataset, tensor2img and metric functions on the saved weights
    net = FMANet(stage=2, **TINY_NET).eval()
    net.load_state_dict({k[len('generator.') :]: v for k, v in final['state_dict'].items()})
    val_set = VSRDBTestDataset(
        dict(
            dataroot_lq=str(data_root / 'train_blur_bicubic/X4'),
            dataroot_gt=str(data_root / 'train_sharp'),
            meta_info_file=str(data_root / 'meta_info_val.txt'),
        )
    )
    with torch.no_grad():
        preds = [tensor2img(net(item['lq'][None])['output']) for item in val_set]
    gts = [tensor2img(item['gt']) for item in val_set]
    assert scores['PSNR'] == pytest.approx(np.mean([calculate_psnr(p, g, 4) for p, g in zip(preds, gts)]), rel=1e-6)
    assert scores['SSIM'] == pytest.approx(np.mean([calculate_ssim(p, g, 4) for p, g in zip(preds, gts)]), rel=1e-6)
    assert scores['tOF'] == pytest.approx(calculate_tof(preds, gts), rel=1e-6)

    # stop after iteration 2, resume: the run ends exactly where the uninterrupted one did
    resumed = tmp_path / 'resumed'
    shutil.copytree(work, resumed)
    (resumed / 'iter_4.pth').unlink()
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_2.pth'))
    resumed_scores = val_scores(train_main([config, '--work-dir', str(resumed), '--resume', *options('resumed')]))
    again = torch.load(resumed / 'iter_4.pth')
    assert again['meta']['iter'] == 4 and set(again['optimizer']) == {'net_d', 'net_r'}
    for key, value in final['state_dict'].items():
        assert torch.equal(again['state_dict'][key], value), key
    for name in ('net_d', 'net_r'):  # Adam continued from the saved state (a fresh one would be at step 2)
        assert {float(s['step']) for s in again['optimizer'][name]['state'].values()} == {4.0}
    assert again['param_schedulers'] == final['param_schedulers'] and resumed_scores == scores


DDP_SCRIPT = """
import sys
import torch
import torch.distributed as dist
from fmanet_plugin.mm.train import main

runner = main(sys.argv[1:])
flat = torch.cat([p.detach().flatten() for p in runner.model.parameters()])
gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0 and all(torch.equal(gathered[0], g) for g in gathered[1:]):
    print('ranks hold identical weights', flush=True)
dist.destroy_process_group()  # as tools/train.py does: gloo can abort at interpreter exit with the group open
"""


def test_torchrun_two_processes_gloo(data_root, stage1_checkpoint, tmp_path):
    """Each rank draws different data (diff_rank_seed, sharded sampler): equal weights mean synced gradients."""
    script = tmp_path / 'ddp_train.py'
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}']
    cmd += [str(script), str(CONFIGS / 'demo_stage2.py'), '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'ddp')]
    log = run(cmd + tiny_options(data_root, 'ddp', 2, 2, **{'model.net_d_checkpoint': stage1_checkpoint}), tmp_path)
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'ranks hold identical weights' in log and 'tOF' in log
    assert (tmp_path / 'ddp' / 'iter_2.pth').is_file()


def basicsr_model(network: dict, train_opt: dict) -> FMANetModel:
    """BasicSR's FMANetModel (CPU) with one Adam per network."""
    adam = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]}
    train = {**train_opt, 'optim_d': dict(adam), 'optim_r': dict(adam)}
    train['scheduler'] = {'type': 'MultiStepLR', 'milestones': [10], 'gamma': 0.5}
    path = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt = {'is_train': True, 'dist': False, 'num_gpu': 0, 'network_g': {'type': 'FMANet', **network}, 'path': path}
    return FMANetModel({**opt, 'train': train})


def mm_inputs(batch: dict) -> dict:
    """A BasicSR training batch as the Runner's collated ``inputs`` / ``data_samples``."""
    samples = [
        BaseDataElement(gt=batch['gt'][i], lq_sharp=batch['lq_sharp'][i], flow=batch['flow'][i])
        for i in range(len(batch['lq']))
    ]
    return {'inputs': list(batch['lq']), 'data_samples': samples}


def test_stage2_loss_equals_basicsr_model_and_released(official):
    weights = convert_official_state_dict(official['state_dict'])
    network, train_opt = network_opt(official), released_train_opt(official)
    theirs = basicsr_model(network, train_opt)
    theirs.net_g.load_state_dict(weights)
    ours = FMANetRestorer(generator=dict(type='fmanet_plugin.FMANet', **network), losses=train_opt)
    ours.generator.load_state_dict(weights)
    batch = fixture_batch(official)
    with torch.no_grad():
        losses = ours(**ours.data_preprocessor(mm_inputs(batch), True), mode='loss')
        theirs.feed_data(batch)
        their_terms = theirs.objective(theirs.net_g(theirs.lq, theirs.gt), theirs.batch)
    total, _ = ours.parse_losses(losses)
    assert float(total) == pytest.approx(official['loss_total_stage2'], rel=1e-6)
    assert float(total) == pytest.approx(float(sum(their_terms.values())), rel=1e-6)
    assert {f'loss_{k[2:]}': float(v) for k, v in their_terms.items()} == pytest.approx(
        {k: float(v) for k, v in losses.items()}, rel=1e-6
    )


def test_stage2_training_step_equals_basicsr_model():
    """One iteration (loss, one backward, one Adam step per network) gives the same weights in both toolboxes."""
    train_opt = tiny_config(Path('.'), 2).model.losses.to_dict()
    theirs = basicsr_model(TINY_NET, train_opt)
    ours = FMANetRestorer(generator=dict(type='fmanet_plugin.FMANet', **TINY_NET), losses=train_opt)
    ours.generator.load_state_dict(theirs.net_g.state_dict())
    initial = {k: v.clone() for k, v in ours.generator.state_dict().items()}
    optim = {name: dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)) for name in ('net_d', 'net_r')}
    wrappers = FMANetOptimWrapperConstructor(optim)(ours)
    gen = torch.Generator().manual_seed(0)
    batch = {
        'lq': torch.rand(2, 3, 3, 8, 8, generator=gen),
        'gt': torch.rand(2, 3, 3, 32, 32, generator=gen),
        'lq_sharp': torch.rand(2, 3, 3, 8, 8, generator=gen),
        'flow': torch.randn(2, 3, 2, 8, 8, generator=gen),
    }
    for step in (1, 2):
        theirs.feed_data(batch)
        theirs.optimize_parameters(step)
        log_vars = ours.train_step(mm_inputs(batch), wrappers)
        assert float(log_vars['loss']) == pytest.approx(theirs.log_dict['l_total'], rel=1e-6)
    reference = theirs.net_g.state_dict()
    for key, value in ours.generator.state_dict().items():
        assert torch.allclose(value, reference[key], rtol=1e-5, atol=1e-7), key
    for name in ('net_d', 'net_r'):  # both networks moved (the equality is not that of untouched weights)
        moved = [
            not torch.equal(v, initial[f'{name}.{k}']) for k, v in getattr(ours.generator, name).state_dict().items()
        ]
        assert any(moved), name


def _pair() -> tuple[torch.nn.Module, list[OptimWrapper]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    return net, [OptimWrapper(torch.optim.SGD(layer.parameters(), lr=0.1)) for layer in net]


def test_step_networks_mixed_precision_scales_once_and_updates_once():
    """With a shared GradScaler the update equals the fp32 one (power-of-two scale), and an overflow skips every
    optimizer and halves the scale once (updating per optimizer would halve it twice)."""
    x = torch.rand(8, 4)
    net, plain = _pair()
    step_networks(plain, net(x).square().mean())
    reference = [p.detach().clone() for p in net.parameters()]

    net, wrappers = _pair()
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0**10)
    for wrapper in wrappers:
        wrapper.loss_scaler = scaler
    step_networks(wrappers, net(x).square().mean())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), reference))
    assert scaler.get_scale() == 2.0**10

    before = [p.detach().clone() for p in net.parameters()]
    step_networks(wrappers, net(x).sum() * float('inf'))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
    assert scaler.get_scale() == 2.0**9
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize('stage', [1, 2])
def test_reds_configs_build_the_released_model(stage):
    cfg = Config.fromfile(CONFIGS / f'fmanet_stage{stage}_reds.py')
    model = MODELS.build(cfg.model)
    released = {'net_d': 3225837, 'net_r': 6540666}  # SPEC.md: parameter counts at the released configuration
    networks = ['net_d', 'net_r'][:stage]
    assert {n: sum(p.numel() for p in getattr(model.generator, n).parameters()) for n in networks} == {
        n: released[n] for n in networks
    }
    assert set(build_optim_wrapper(model, cfg.optim_wrapper).keys()) == set(networks)
    assert cfg.train_cfg.max_iters == 1330000
    assert cfg.train_dataloader.dataset.exclude_clips == ['000', '011', '015', '020']  # REDS4 held out


def test_checkpoints_appear_only_complete_and_resume(data_root, tmp_path, monkeypatch):
    """The configs' runner writes each checkpoint to a temporary name, fsyncs and renames it: a write that dies
    half-way leaves the previous file (or none) under the final name, never a truncated one."""
    from fmanet_plugin.mm.runner import AtomicCheckpointRunner

    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner import Runner

    config, work = str(CONFIGS / 'demo_stage1.py'), tmp_path / 'work'
    runner = train_main([config, '--work-dir', str(work), *tiny_options(data_root, 'atomic_save', 1, 2)])
    assert type(runner) is AtomicCheckpointRunner
    complete = (work / 'iter_2.pth').read_bytes()
    written = []
    put = LocalBackend.put

    def spy(self, obj, filepath):
        written.append(Path(filepath))
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', spy)
    runner.save_checkpoint(str(work), 'iter_5.pth', by_epoch=False)
    assert written[0].parent == work and written[0].name.startswith('.iter_5.pth.')  # a hidden temporary name
    assert not written[0].exists() and torch.load(work / 'iter_5.pth')['meta']['iter'] == 3

    def dies_half_way(self, obj, filepath):  # a run killed while writing
        with open(filepath, 'wb') as f:
            f.write(obj[: len(obj) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalBackend, 'put', dies_half_way)
    with pytest.raises(KeyboardInterrupt):  # control: mmengine's own save leaves a truncated file
        Runner.save_checkpoint(runner, str(work), 'iter_7.pth', by_epoch=False)
    assert 0 < (work / 'iter_7.pth').stat().st_size < len(complete) // 2 + 1024
    (work / 'iter_7.pth').unlink()
    for name in ('iter_2.pth', 'iter_6.pth'):  # over an existing checkpoint, and a new one
        with pytest.raises(KeyboardInterrupt):
            runner.save_checkpoint(str(work), name, by_epoch=False)
    assert (work / 'iter_2.pth').read_bytes() == complete and not (work / 'iter_6.pth').exists()
    assert sorted(p.name for p in work.glob('.*')) == []  # no temporary file left behind
    monkeypatch.undo()

    # --resume picks up last_checkpoint (iter_2.pth) and continues: Adam at step 3, not a fresh one at step 1
    (work / 'iter_5.pth').unlink()
    resumed = train_main([config, '--work-dir', str(work), '--resume', *tiny_options(data_root, 'atomic_resume', 1, 3)])
    final = torch.load(work / 'iter_3.pth')
    assert resumed.iter == 3 and final['meta']['iter'] == 3
    for state in final['optimizer'].values():
        assert {float(s['step']) for s in state['state'].values()} == {3.0}
