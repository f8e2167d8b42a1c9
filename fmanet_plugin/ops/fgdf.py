"""Flow-guided dynamic filtering (FGDF): per-pixel spatio-temporal kernels applied to warped frames.

Both operators take frames that are already warped to the centre frame (so a small kernel follows the
motion trajectory) and per-pixel kernels predicted by the networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def fgdf_downsample(
    hr_frames: torch.Tensor, degradation_kernels: torch.Tensor, scale: int, hr_ones: torch.Tensor | None = None
) -> torch.Tensor:
    """Synthesise the blurry LR centre frame from warped HR frames (Net_D's FGDF downsampling).

    The kernels are normalised by a softmax over all ``t * k_d**2`` taps of an LR pixel. The HR frames
    are replicate-padded by ``(k_d - scale) / 2`` and LR pixel ``(i, j)`` is the weighted sum of the
    ``k_d x k_d`` window starting at HR pixel ``(scale*i, scale*j)`` of every frame. When ``hr_ones``
    (the warped, masked all-ones frames) is given, the result is divided by the same filter applied to
    it (+1e-8), which compensates for the occluded/out-of-frame samples.

    Args:
        hr_frames (Tensor): Warped HR frames of shape (b, t, c, scale*h, scale*w).
        degradation_kernels (Tensor): Unnormalised kernels of shape (b, t, k_d*k_d, h, w), taps in
            ``(ky, kx)`` order.
        scale (int): Downsampling factor ``s``; ``k_d - s`` must be even.
        hr_ones (Tensor | None): Warped, masked all-ones frames of shape (b, t, 1, scale*h, scale*w).
            Default: None (no normalisation).

    Returns:
        Tensor: LR frame of shape (b, c, h, w).
    """
    b, t, num_taps, h, w = degradation_kernels.shape
    kernel_size = int(round(num_taps**0.5))
    weights = torch.softmax(degradation_kernels.reshape(b, t * num_taps, h, w), dim=1).view(b, t, num_taps, h, w)
    out = _filter_strided(hr_frames, weights, kernel_size, scale)
    if hr_ones is not None:
        out = out / (_filter_strided(hr_ones, weights, kernel_size, scale) + 1e-8)
    return out


def _filter_strided(frames: torch.Tensor, weights: torch.Tensor, kernel_size: int, scale: int) -> torch.Tensor:
    """Weighted sum over frames and strided windows: (b, t, c, sH, sW) x (b, t, k*k, h, w) -> (b, c, h, w)."""
    b, t, c, height, width = frames.shape
    h, w = weights.shape[-2:]
    pad = (kernel_size - scale) // 2
    padded = F.pad(frames.reshape(b * t, c, height, width), (pad, pad, pad, pad), mode='replicate')
    patches = F.unfold(padded, kernel_size, stride=scale).view(b, t, c, kernel_size * kernel_size, h, w)
    return torch.einsum('btckhw,btkhw->bchw', patches, weights)


def normalize_restoration_kernels(restoration_kernels: torch.Tensor, scale: int) -> torch.Tensor:
    """Normalise FGDF upsampling kernels so that the taps of every output sub-pixel sum to 1.

    Each sub-pixel's ``t * k_r**2`` taps are shifted by their mean and offset by ``1 / (t * k_r**2)``.

    Args:
        restoration_kernels (Tensor): Kernels of shape (b, t, scale*scale*k_r*k_r, h, w), channels in
            ``(s1, s2, ky, kx)`` order.
        scale (int): Upsampling factor ``s``.

    Returns:
        Tensor: Normalised kernels of shape (b, t, scale*scale, k_r*k_r, h, w).
    """
    b, t, channels, h, w = restoration_kernels.shape
    kernels = restoration_kernels.view(b, t, scale * scale, channels // (scale * scale), h, w)
    num_taps = t * kernels.shape[3]
    return kernels - kernels.mean(dim=(1, 3), keepdim=True) + 1.0 / num_taps


def fgdf_upsample(lr_frames: torch.Tensor, restoration_kernels: torch.Tensor, scale: int) -> torch.Tensor:
    """Restore the HR centre frame from warped LR frames with per-pixel sub-pixel kernels (Net_R's FGDF).

    Output pixel ``(s*i + s1, s*j + s2)`` is the sum over frames and the ``k_r x k_r`` replicate-padded
    neighbourhood of LR pixel ``(i, j)``, weighted by sub-pixel ``(s1, s2)``'s normalised kernel.

    Args:
        lr_frames (Tensor): Warped LR frames of shape (b, t, c, h, w).
        restoration_kernels (Tensor): Unnormalised kernels of shape (b, t, scale*scale*k_r*k_r, h, w).
        scale (int): Upsampling factor ``s``.

    Returns:
        Tensor: HR frame of shape (b, c, scale*h, scale*w).
    """
    b, t, c, h, w = lr_frames.shape
    kernels = normalize_restoration_kernels(restoration_kernels, scale)
    kernel_size = int(round(kernels.shape[3] ** 0.5))
    pad = kernel_size // 2
    padded = F.pad(lr_frames.reshape(b * t, c, h, w), (pad, pad, pad, pad), mode='replicate')
    patches = F.unfold(padded, kernel_size).view(b, t, c, kernel_size * kernel_size, h, w)
    out = torch.einsum('btckhw,btskhw->bcshw', patches, kernels)
    return F.pixel_shuffle(out.reshape(b, c * scale * scale, h, w), scale)


def fgdf_downsample_chunked(
    hr_frames: torch.Tensor,
    degradation_kernels: torch.Tensor,
    scale: int,
    hr_ones: torch.Tensor | None = None,
    max_chunk_bytes: int = 24 * 2**20,
) -> torch.Tensor:
    """:func:`fgdf_downsample` in LR row chunks, never holding more than ``max_chunk_bytes`` of patches.

    The all-ones normaliser rides along as one extra channel of the same patches. Under autograd every
    chunk is checkpointed (its patches are recomputed in the backward pass instead of being stored).

    Args:
        hr_frames (Tensor): Warped HR frames of shape (b, t, c, scale*h, scale*w).
        degradation_kernels (Tensor): Unnormalised kernels of shape (b, t, k_d*k_d, h, w).
        scale (int): Downsampling factor ``s``; ``k_d - s`` must be even.
        hr_ones (Tensor | None): Warped, masked all-ones frames of shape (b, t, 1, scale*h, scale*w).
            Default: None (no normalisation).
        max_chunk_bytes (int): Patch memory budget of one chunk. Default: 24 MiB.

    Returns:
        Tensor: LR frame of shape (b, c, h, w), equal to :func:`fgdf_downsample` up to float round-off.
    """
    b, t, num_taps, h, w = degradation_kernels.shape
    c = hr_frames.shape[2]
    kernel_size = int(round(num_taps**0.5))
    frames = hr_frames if hr_ones is None else torch.cat((hr_frames, hr_ones), dim=2)
    pad = (kernel_size - scale) // 2
    height, width = frames.shape[-2:]
    padded = F.pad(frames.reshape(b * t, -1, height, width), (pad, pad, pad, pad), mode='replicate')
    rows = max(1, max_chunk_bytes // (4 * b * t * frames.shape[2] * num_taps * w))
    grad = torch.is_grad_enabled() and (frames.requires_grad or degradation_kernels.requires_grad)
    outs = []
    for lo in range(0, h, rows):
        hi = min(lo + rows, h)
        slab = padded[:, :, scale * lo : scale * (hi - 1) + kernel_size]
        kernels = degradation_kernels[..., lo:hi, :]
        if grad:
            out = checkpoint(_downsample_rows, slab, kernels, kernel_size, scale, use_reentrant=False)
        else:
            out = _downsample_rows(slab, kernels, kernel_size, scale)
        outs.append(out if hr_ones is None else out[:, :c] / (out[:, c:] + 1e-8))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _downsample_rows(slab: torch.Tensor, kernels: torch.Tensor, kernel_size: int, scale: int) -> torch.Tensor:
    """Softmax-weighted strided windows of padded HR rows: (b*t, c, ., W) x (b, t, k*k, rows, w) -> (b, c, rows, w)."""
    b, t, num_taps, rows, w = kernels.shape
    weights = torch.softmax(kernels.reshape(b, t * num_taps, rows * w), dim=1).view(b, t, num_taps, rows * w)
    patches = F.unfold(slab, kernel_size, stride=scale).view(b, t, slab.shape[1], num_taps, rows * w)
    return torch.einsum('btckp,btkp->bcp', patches, weights).view(b, -1, rows, w)


def fgdf_upsample_rows(
    padded_frames: torch.Tensor, restoration_kernels: torch.Tensor, row_start: int, scale: int
) -> torch.Tensor:
    """FGDF upsampling of the LR rows ``[row_start, row_start + rows)`` only (see :func:`fgdf_upsample`).

    Args:
        padded_frames (Tensor): Warped LR frames, replicate-padded by ``k_r // 2`` on every side, of shape
            (b, t, c, h + 2p, w + 2p).
        restoration_kernels (Tensor): Unnormalised kernels of those rows, (b, t, scale*scale*k_r*k_r, rows, w).
        row_start (int): First LR row.
        scale (int): Upsampling factor ``s``.

    Returns:
        Tensor: HR rows of shape (b, c, scale*rows, scale*w).
    """
    b, t, c = padded_frames.shape[:3]
    rows, w = restoration_kernels.shape[-2:]
    kernels = normalize_restoration_kernels(restoration_kernels, scale)
    kernel_size = int(round(kernels.shape[3] ** 0.5))
    slab = padded_frames[:, :, :, row_start : row_start + rows + kernel_size - 1]
    patches = F.unfold(slab.reshape(b * t, c, rows + kernel_size - 1, -1), kernel_size)
    patches = patches.view(b, t, c, kernel_size * kernel_size, rows * w)
    kernels = kernels.reshape(b, t, scale * scale, kernel_size * kernel_size, rows * w)
    out = torch.einsum('btckp,btskp->bcsp', patches, kernels)
    return F.pixel_shuffle(out.reshape(b, c * scale * scale, rows, w), scale)
