"""Quality against cost of the benchmarked models, with the Pareto front (``benchmark.png``)."""

from __future__ import annotations

import io

from fmanet_plugin.utils.atomic_io import atomic_write_bytes

import numpy as np


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats in both cost (x, lower is better) and PSNR (y, higher is better), by cost."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def render_plot(rows: list[dict], path: str, title: str = '') -> None:
    """Write a PNG: PSNR against MACs per frame and against latency per frame, with the Pareto front (when every
    model has a PSNR); otherwise MACs against latency. Rows are benchmark table rows (failed ones are left out)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [r for r in rows if 'error' not in r]
    use_psnr = bool(rows) and all(r.get('psnr') is not None for r in rows)
    if use_psnr:
        panels = [
            ('gmacs_per_frame', 'MACs per output frame (G)'),
            ('latency_ms_per_frame', 'latency per output frame (ms)'),
        ]
        y_key, y_label = 'psnr', 'PSNR (dB, RGB)'
    else:
        panels = [('latency_ms_per_frame', 'latency per output frame (ms)')]
        y_key, y_label = 'gmacs_per_frame', 'MACs per frame (G)'
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), dpi=100, squeeze=False)
    for ax, (x_key, x_label) in zip(axes[0], panels, strict=True):
        points = []
        for row in rows:
            x, y = max(row[x_key], 1e-6), row[y_key]
            points.append((x, y))
            ax.scatter(x, y)
            ax.annotate(row['model'], (x, y), textcoords='offset points', xytext=(4, 4), fontsize=8)
        if use_psnr and len(points) > 1:
            front = pareto_front(points)
            ax.plot(*zip(*front, strict=True), '--', color='grey', linewidth=1, label='Pareto front')
            ax.legend(fontsize=8, loc='best')
        ax.set_xscale('log')
        if not use_psnr and rows and all(r[y_key] > 0 for r in rows):
            ax.set_yscale('log')
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)
