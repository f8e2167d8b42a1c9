"""utils/atomic_io.py: a write either completes under the final name or leaves the old content and no litter."""

from __future__ import annotations

import os
import stat

from fmanet_plugin.utils.atomic_io import (
    atomic_imwrite,
    atomic_open,
    atomic_torch_save,
    atomic_write_text,
    partial_directory,
    publish_directory,
)

import cv2
import numpy as np
import pytest
import torch


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'report.md'
    target.write_text('old')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_open(target, 'w') as f:
            f.write('new, half written')
            raise RuntimeError('disk full')
    assert target.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report.md']


def test_failed_image_encoding_leaves_nothing(tmp_path):
    with pytest.raises(OSError, match='frame.unknown_format'):
        atomic_imwrite(np.zeros((4, 4, 3), np.uint8), tmp_path / 'frame.unknown_format')
    assert list(tmp_path.iterdir()) == []


def test_completed_writes_have_umask_permissions_and_content(tmp_path):
    umask = os.umask(0o027)
    try:
        atomic_write_text('abc', tmp_path / 'sub' / 'a.txt')  # the folder is created
        img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        atomic_imwrite(img, tmp_path / 'b.png')
        atomic_torch_save({'params': {'w': torch.ones(2)}}, tmp_path / 'c.pth')
    finally:
        os.umask(umask)
    assert (tmp_path / 'sub' / 'a.txt').read_text() == 'abc'
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'b.png')), img)
    assert torch.equal(torch.load(tmp_path / 'c.pth', weights_only=True)['params']['w'], torch.ones(2))
    for name in ('sub/a.txt', 'b.png', 'c.pth'):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name  # 0o666 & ~0o027, not mkstemp's 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b.png', 'c.pth', 'sub']


def test_published_directory_replaces_the_old_one_whole(tmp_path):
    final = tmp_path / 'data.lmdb'
    final.mkdir()
    (final / 'old.txt').write_text('old')
    partial = partial_directory(final)
    assert partial.parent == tmp_path and partial.name.startswith('.data.lmdb.') and partial.name.endswith('.partial')
    (partial / 'new.txt').write_text('new')
    assert publish_directory(partial, final) == final
    assert sorted(p.name for p in final.iterdir()) == ['new.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data.lmdb']
