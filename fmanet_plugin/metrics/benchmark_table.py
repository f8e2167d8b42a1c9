"""The benchmark's results table: one row (a dict) per model, rendered as Markdown and CSV.

A row holds a model's cost (:func:`fmanet_plugin.metrics.model_cost.measure_cost`), its quality (``psnr``,
``psnr_y``, ``ssim``, ``tof``, ``eval_frames``) and, for a trained run, its training budget
(:func:`fmanet_plugin.utils.run_info.training_budget`); a model that failed has an ``error`` instead.
"""

from __future__ import annotations

import csv
import io

from fmanet_plugin.utils.cli import format_number

COLUMNS = (
    'Model',
    'Variant',
    'Params (M)',
    'MACs / frame (G)',
    'Latency / frame (ms)',
    'Peak memory (MB)',
    'PSNR (dB)',
    'PSNR Y (dB)',
    'SSIM',
    'tOF',
)
# equal footing of trained runs (--checkpoints / -opt): their training budget, from their option files and logs
FOOTING_COLUMNS = ('Iterations', 'GT patch', 'Batch', 'Frames', 'Training data', 'Wall time (s)')
CSV_FIELDS = ('model', 'variant', 'device', 'params_m', 'gmacs_per_frame', 'latency_ms_per_frame', 'peak_mem_mb',
              'psnr', 'psnr_y', 'ssim', 'tof', 'eval_frames', 'iterations', 'gt_patch', 'batch', 'frames', 'data',
              'wall_time_s', 'evaluation', 'options', 'checkpoint', 'load_average', 'error')  # fmt: skip


def _text(value) -> str:
    return '-' if value is None else str(value)


def render_markdown(rows: list[dict], preamble: str) -> str:
    """A paragraph (``preamble``: the setting of the measurement) and the table; the training-budget columns only
    when some row has one, a failed model as one ``failed: <error>`` row."""
    footing = any('iterations' in r for r in rows)
    columns = COLUMNS + (FOOTING_COLUMNS if footing else ())
    lines = [
        preamble,
        '',
        '| ' + ' | '.join(columns) + ' |',
        '|' + '|'.join(['---'] * 2 + ['---:'] * (len(COLUMNS) - 2) + ['---:'] * 4 * footing + ['---'] * footing
                       + ['---:'] * footing) + '|',
    ]  # fmt: skip
    for row in rows:
        if 'error' in row:
            lines.append(f'| {row["model"]} | failed: {row["error"]} |' + ' |' * (len(columns) - 2))
            continue
        cells = [
            row['model'],
            row['variant'],
            format_number(row['params_m'], 3),
            format_number(row['gmacs_per_frame'], 3),
            format_number(row['latency_ms_per_frame'], 1),
            format_number(row.get('peak_mem_mb'), 0),
            format_number(row.get('psnr'), 2),
            format_number(row.get('psnr_y'), 2),
            format_number(row.get('ssim'), 4),
            format_number(row.get('tof'), 3),
        ]
        if footing:
            cells += [_text(row.get(k)) for k in ('iterations', 'gt_patch', 'batch', 'frames', 'data')]
            cells.append(format_number(row.get('wall_time_s'), 0))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def render_csv(rows: list[dict]) -> str:
    """Every row with the ``CSV_FIELDS`` columns (empty for a missing value)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: '' if row.get(k) is None else row[k] for k in CSV_FIELDS})
    return buffer.getvalue()
