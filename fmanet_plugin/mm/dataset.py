"""VSRDB clips in the REDS layout (disk or LMDB) as an mmengine ``BaseDataset``; frames are read by the pipeline."""

from __future__ import annotations

import logging

from fmanet_plugin.data.vsrdb_clips import check_dataset_files, check_num_frame, list_clips, select_clips
from fmanet_plugin.data.vsrdb_video_clips import refuse_video_roots
from fmanet_plugin.mm.registry import DATASETS

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

STREAMS = ('lq', 'gt', 'lq_sharp', 'flow')


@DATASETS.register_module()
class VSRDBDataset(BaseDataset):
    """Lists the clips and frames of a VSRDB dataset, the same data as BasicSR's ``VSRDBDataset`` (training)
    and ``VSRDBTestDataset`` (``test_mode=True``).

    Training (``test_mode=False``): one item per frame of every clip with at least ``num_frame`` frames; the
    pipeline's ``LoadVSRDBFrames(window='random')`` reads a random window of the item's clip, so clips are drawn
    in proportion to their length. Test: one item per frame, windows edge-padded at clip ends
    (``window='replicate'``).

    Args:
        data_prefix (dict): Stream -> folder or ``.lmdb`` (relative to ``data_root``): ``lq`` (blurry LR,
            required), ``gt`` (sharp HR; required for training), ``lq_sharp`` (sharp LR; required for training),
            ``flow`` (optional, ``<clip>/<centre>_<neighbour>.npy``).
        ann_file (str): Optional meta info file with lines ``<clip> <num_frames> (h,w,c)``; without it the clips
            are listed from ``lq`` (LMDB meta info or clip folders).
        num_frame (int): Window length ``2N+1``. Default: 3.
        clips (list | None): Use only these clips (in this order). Default: all.
        exclude_clips (list | None): Leave these clips out (e.g. REDS4 for training).
        filename_tmpl (str): Frame stem format with ``ann_file``. Default: ``'08d'``.
        filename_ext (str): Image extension on disk. Default: ``'png'``.
        io_backend (dict | None): ``dict(type='disk')`` (default) or ``dict(type='lmdb')``.
        **kwargs: ``BaseDataset`` arguments (``data_root``, ``pipeline``, ``test_mode``, ...).

    Items: ``clip``, ``stems`` (the clip's frame stems), ``frame_idx`` (the item's frame), ``num_frame``,
    ``roots`` (stream -> path), ``io_backend``, ``filename_ext``.
    """

    def __init__(
        self,
        data_prefix: dict,
        ann_file: str = '',
        num_frame: int = 3,
        clips: list | None = None,
        exclude_clips: list | None = None,
        filename_tmpl: str = '08d',
        filename_ext: str = 'png',
        io_backend: dict | None = None,
        **kwargs,
    ) -> None:
        self.num_frame = check_num_frame(num_frame, type(self).__name__)
        self.clip_names = None if clips is None else [str(c) for c in clips]
        self.exclude_clips = {str(c) for c in exclude_clips or []}
        self.filename_tmpl = filename_tmpl
        self.filename_ext = filename_ext
        self.io_backend = dict(io_backend or {'type': 'disk'})
        super().__init__(ann_file=ann_file, data_prefix=dict(data_prefix), **kwargs)

    def load_data_list(self) -> list[dict]:
        name = type(self).__name__
        unknown = sorted(set(self.data_prefix) - set(STREAMS))
        if unknown:
            raise ValueError(f'{name}: data_prefix keys must be among {STREAMS}, got {unknown}')
        required = ('lq',) if self.test_mode else ('lq', 'gt', 'lq_sharp')
        missing = [s for s in required if not self.data_prefix.get(s)]
        if missing:
            raise ValueError(f'{name}: data_prefix needs {missing} ({"test" if self.test_mode else "training"} mode)')
        roots = {stream: str(root) for stream, root in self.data_prefix.items() if root}
        if self.test_mode:
            roots = {s: r for s, r in roots.items() if s in ('lq', 'gt')}
        opt = dict(
            meta_info_file=self.ann_file or None,
            filename_tmpl=self.filename_tmpl,
            filename_ext=self.filename_ext,
            io_backend=self.io_backend,
        )
        check_dataset_files(roots, {}, self.io_backend.get('type'), self.filename_ext, name)  # the folders first
        if not self.test_mode and self.io_backend.get('type') == 'disk':
            refuse_video_roots(roots, name)
        warn = None if self.test_mode else (lambda msg: print_log(msg, level=logging.WARNING))
        clips = select_clips(
            list_clips(opt, roots['lq'], name),
            name,
            roots['lq'],
            only=self.clip_names,
            exclude=self.exclude_clips,
            min_frames=0 if self.test_mode else self.num_frame,
            warn=warn,
        )
        flow_radius = 0 if self.test_mode else self.num_frame // 2
        check_dataset_files(roots, clips, self.io_backend.get('type'), self.filename_ext, name, flow_radius)
        common = dict(num_frame=self.num_frame, roots=roots, io_backend=self.io_backend, filename_ext=self.filename_ext)
        return [
            dict(clip=clip, stems=stems, frame_idx=idx, **common)
            for clip, stems in clips.items()
            for idx in range(len(stems))
        ]
