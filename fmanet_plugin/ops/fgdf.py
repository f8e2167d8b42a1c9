"""Flow-guided dynamic filtering (FGDF): per-pixel spatio-temporal kernels applied to warped frames.

Both operators take frames that are already warped to the centre frame (so a small kernel follows the
motion trajectory) and per-pixel kernels predicted by the networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
