"""fmanet_plugin.utils.clip_restoration: windows, chunks and kinds against hand-computed indices and invariants."""

from __future__ import annotations

import fmanet_plugin  # noqa: F401
from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.archs.small_frame_vsr_arch import SmallFrameBasicVSR, SmallFrameIconVSR
from fmanet_plugin.utils.clip_restoration import chunk_bounds, model_kind, restore_clip, window_length

import pytest
import torch
from basicsr.archs.basicvsr_arch import IconVSR
from basicsr.archs.edvr_arch import EDVR
from conftest import TINY_NET
from torch import nn


def index_clip(num_frames: int, size: int = 4) -> torch.Tensor:
    """(t, 3, size, size) whose frame i is the constant i."""
    return torch.arange(num_frames, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, size, size).clone()


class WindowProbe(nn.Module):
    """Sliding-window stand-in: output channel k is input frame k (upscaled x2), so outputs reveal windows."""

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(lq[:, :, 0], scale_factor=2, mode='nearest')


class TemporalBox(nn.Module):
    """Recurrent stand-in whose output frame i is the mean of input frames i - r .. i + r (ends repeated)."""

    def __init__(self, radius: int):
        super().__init__()
        self.radius = radius

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        t = lq.size(1)
        frames = []
        for i in range(t):
            total = torch.zeros_like(lq[:, 0])
            for j in range(i - self.radius, i + self.radius + 1):
                total = total + lq[:, min(max(j, 0), t - 1)]
            frames.append(total / (2 * self.radius + 1))
        return torch.stack(frames, 1)


@pytest.mark.parametrize('batch_size', [1, 2, 5])
def test_sliding_windows_are_edge_padded(batch_size):
    out = restore_clip(WindowProbe(), index_clip(5), kind='sliding', num_frame=3, batch_size=batch_size)
    windows = out[:, :, 0, 0].tolist()  # (t, 3): the frame index seen at each window position
    assert windows == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    out5 = restore_clip(WindowProbe(), index_clip(4), kind='sliding', num_frame=5)
    assert out5[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]


def test_sliding_fmanet_dict_output():
    torch.manual_seed(0)
    net = FMANet(stage=2, **TINY_NET).eval()
    lq = torch.rand(4, 3, 8, 8)
    out = restore_clip(net, lq)
    assert out.shape == (4, 3, 32, 32)
    with torch.no_grad():
        last = net(lq[[2, 3, 3]].unsqueeze(0))['output'][0]  # frame 3: its window repeats the last frame
    assert torch.allclose(out[3], last, atol=1e-6)


def test_chunk_bounds_hand_computed():
    assert chunk_bounds(7, 3, 2) == [(0, 5, 0, 3), (1, 7, 3, 6), (4, 7, 6, 7)]
    assert chunk_bounds(4, 4, 0) == [(0, 4, 0, 4)]
    assert chunk_bounds(5, 2, 9) == [(0, 5, 0, 2), (0, 5, 2, 4), (0, 5, 4, 5)]
    # Pieces widened to 5 frames (IconVSR's minimum): forwards first, backwards at the clip end.
    assert chunk_bounds(7, 2, 0, min_piece=5) == [(0, 5, 0, 2), (2, 7, 2, 4), (2, 7, 4, 6), (2, 7, 6, 7)]
    assert chunk_bounds(3, 1, 0, min_piece=5) == [(0, 3, 0, 1), (0, 3, 1, 2), (0, 3, 2, 3)]
    with pytest.raises(ValueError, match='chunk'):
        chunk_bounds(5, 0, 1)


@pytest.mark.parametrize('chunk', [1, 2, 3])
def test_chunks_exact_for_limited_temporal_reach(chunk):
    torch.manual_seed(0)
    lq = torch.rand(7, 3, 4, 4)
    net = TemporalBox(radius=2)
    whole = restore_clip(net, lq, kind='recurrent')
    # Hand-computed frame 0: mean of frames 0, 0, 0, 1, 2.
    assert torch.allclose(whole[0], (3 * lq[0] + lq[1] + lq[2]) / 5)
    assert torch.equal(restore_clip(net, lq, kind='recurrent', chunk=chunk, overlap=2), whole)
    assert torch.equal(restore_clip(net, lq, kind='recurrent', chunk=chunk, overlap=5), whole)
    # One context frame less than the reach: frames next to a cut see the piece end repeated instead.
    assert not torch.allclose(restore_clip(net, lq, kind='recurrent', chunk=chunk, overlap=1), whole)


def test_chunked_basicvsr_exact_with_whole_clip_overlap():
    torch.manual_seed(0)
    net = SmallFrameBasicVSR(num_feat=8, num_block=1).eval()
    lq = torch.rand(5, 3, 12, 12)
    whole = restore_clip(net, lq)
    assert whole.shape == (5, 3, 48, 48)
    assert torch.equal(restore_clip(net, lq, chunk=2, overlap=4), whole)  # overlap >= t - 1: every piece is whole
    assert not torch.equal(restore_clip(net, lq, chunk=2, overlap=0), whole)  # its state spans the whole clip


def test_chunked_iconvsr_pieces_reach_its_minimum_length():
    torch.manual_seed(0)
    net = SmallFrameIconVSR(num_feat=8, num_block=1).eval()
    lq = torch.rand(6, 3, 8, 8)
    whole = restore_clip(net, lq)
    assert torch.equal(restore_clip(net, lq, chunk=2, overlap=5), whole)
    assert restore_clip(net, lq, chunk=2, overlap=0).shape == whole.shape  # 2-frame pieces widened to 5


def test_model_kind_and_window():
    edvr = EDVR(num_feat=8, num_frame=5, deformable_groups=8, num_extract_block=1, num_reconstruct_block=1)
    assert model_kind(edvr) == 'sliding' and window_length(edvr) == 5
    fmanet = FMANet(stage=2, **TINY_NET)
    assert model_kind(nn.DataParallel(fmanet)) == 'sliding' and window_length(fmanet) == 3
    assert model_kind(SmallFrameBasicVSR(num_feat=8, num_block=1)) == 'recurrent'
    assert model_kind(IconVSR(num_feat=8, num_block=1)) == 'recurrent'
    with pytest.raises(ValueError, match="kind='sliding'"):
        model_kind(WindowProbe())
    with pytest.raises(ValueError, match='num_frame'):
        restore_clip(WindowProbe(), index_clip(3), kind='sliding')
