"""Run under torchrun: train FMANetModel for a few DDP steps on different data per rank, then check that
every rank holds the same weights (gradients were averaged), on CPU with gloo."""

from __future__ import annotations

import sys

import fmanet_plugin  # noqa: F401
from fmanet_plugin.compat import init_dist

import torch
import torch.distributed as dist
import yaml
from basicsr.models import build_model


def main(opt_path: str) -> None:
    init_dist('pytorch')
    rank, world = dist.get_rank(), dist.get_world_size()
    opt = yaml.safe_load(open(opt_path))
    opt.update(dist=True, rank=rank, world_size=world, is_train=True, auto_resume=False)
    opt['path'].update(pretrain_network_d=None, experiments_root='.', models='.', training_states='.')
    opt.pop('val', None)
    model = build_model(opt)
    torch.manual_seed(100 + rank)  # different data on each rank
    for step in range(1, 3):
        model.feed_data(
            {
                'lq': torch.rand(1, 3, 3, 8, 8),
                'gt': torch.rand(1, 3, 3, 32, 32),
                'lq_sharp': torch.rand(1, 3, 3, 8, 8),
                'flow': torch.randn(1, 3, 2, 8, 8),
            }
        )
        model.optimize_parameters(step)
    flat = torch.cat([p.detach().flatten() for p in model.get_bare_model(model.net_g).parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        assert all(torch.equal(gathered[0], g) for g in gathered[1:]), 'ranks diverged'
        print('ranks hold identical weights', flush=True)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
