"""The embedded default job (``make demo``): generate the demo clips, train FMA-Net stage 1 then stage 2
on them with ``tools/train.py``, and print the validation PSNR/SSIM next to bicubic upsampling.

Everything runs on the CPU in a few minutes; outputs go to ``datasets/demo`` and ``experiments/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import fmanet_plugin  # noqa: F401
from fmanet_plugin.utils.errors import main_entry

import torch
import yaml
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    print('$ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def evaluate(stage2_opt: dict, checkpoint: Path) -> dict[str, tuple[float, float]]:
    """Mean PSNR/SSIM (RGB, border 4) of FMA-Net and of bicubic upsampling on the validation clip."""
    net = build_network(dict(stage2_opt['network_g']))
    net.load_state_dict(torch.load(checkpoint, map_location='cpu')['params'])
    net.eval()
    val_opt = dict(stage2_opt['datasets']['val'], phase='val', scale=stage2_opt['scale'])
    dataset = build_dataset(val_opt)
    scores = {'bicubic': [], 'FMA-Net': []}
    for sample in dataset:
        lq, gt = sample['lq'], tensor2img(sample['gt'])
        centre = lq[lq.shape[0] // 2 : lq.shape[0] // 2 + 1]
        bicubic = torch.nn.functional.interpolate(centre, scale_factor=4, mode='bicubic', align_corners=False)
        with torch.no_grad():
            restored = net(lq.unsqueeze(0))['output']
        for name, image in (('bicubic', bicubic), ('FMA-Net', restored)):
            img = tensor2img(image.clamp(0, 1))
            scores[name].append((calculate_psnr(img, gt, 4), calculate_ssim(img, gt, 4)))
    return {k: tuple(sum(s[i] for s in v) / len(v) for i in range(2)) for k, v in scores.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--stage1', default=str(ROOT / 'options/demo_stage1.yml'))
    parser.add_argument('--stage2', default=str(ROOT / 'options/demo_stage2.yml'))
    args = parser.parse_args()
    python = sys.executable
    start = time.time()
    if not Path('datasets/demo/meta_info_val.txt').exists():
        run([python, str(ROOT / 'tools/make_demo_data.py'), '--out', 'datasets/demo'])
    run([python, str(ROOT / 'tools/train.py'), '-opt', args.stage1])
    run([python, str(ROOT / 'tools/train.py'), '-opt', args.stage2])
    stage2_opt = yaml.safe_load(Path(args.stage2).read_text())
    checkpoint = Path('experiments') / stage2_opt['name'] / 'models' / 'net_g_latest.pth'
    scores = evaluate(stage2_opt, checkpoint)
    print(f'\nDemo finished in {time.time() - start:.0f} s. Validation clip, RGB, border 4:')
    print('| method | PSNR (dB) | SSIM |\n|---|---|---|')
    for name, (psnr, ssim) in scores.items():
        print(f'| {name} | {psnr:.2f} | {ssim:.4f} |')
    print(f'checkpoint: {checkpoint}')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    main_entry(main)
