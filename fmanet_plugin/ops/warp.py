"""Occlusion-aware backward warping (single image flow and multi-flow over feature channel groups).

Flows are in pixels, channel 0 = x (width), channel 1 = y (height); sampling is bilinear with zero
padding and ``align_corners=True`` (BasicSR's ``flow_warp``). A flow-mask tensor carries
``(flow_x, flow_y, mask_logit)`` per flow; the occlusion mask is ``sigmoid(mask_logit)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import flow_warp


def warp_multi_flow(features: torch.Tensor, flow_masks: torch.Tensor, num_flow: int) -> torch.Tensor:
    """Warp each frame's features with ``num_flow`` flow-mask pairs, one per group of channels.

    Channel group ``j`` (channels ``j*C/n ... (j+1)*C/n - 1``) is warped by flow-mask pair ``j``
    (flow-mask channels ``3j, 3j+1, 3j+2``) and multiplied by its occlusion mask.

    Args:
        features (Tensor): Features of shape (b, t, c, h, w); ``c`` divisible by ``num_flow``.
        flow_masks (Tensor): Flow-mask pairs of shape (b, t, 3 * num_flow, h, w).
        num_flow (int): Number of flow-mask pairs ``n``.

    Returns:
        Tensor: Warped, masked features of shape (b, t, c, h, w).
    """
    b, t, c, h, w = features.shape
    groups = features.reshape(b * t * num_flow, c // num_flow, h, w)
    flow_masks = flow_masks.reshape(b * t * num_flow, 3, h, w)
    warped = flow_warp(groups, flow_masks[:, :2].permute(0, 2, 3, 1))
    warped = warped * torch.sigmoid(flow_masks[:, 2:3])
    return warped.view(b, t, c, h, w)


def warp_image(
    images: torch.Tensor, flow_mask: torch.Tensor, scale: int = 1, with_ones: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backward-warp images with one low-resolution flow-mask pair, upsampled by ``scale`` if needed.

    For ``scale != 1`` the mask (after the sigmoid) and the flow are upsampled bilinearly
    (``align_corners=False``) and the flow is multiplied by ``scale``.

    Args:
        images (Tensor): Images of shape (n, c, scale*h, scale*w).
        flow_mask (Tensor): Flow-mask pair of shape (n, 3, h, w).
        scale (int): Resolution ratio between ``images`` and ``flow_mask``. Default: 1.
        with_ones (bool): Also warp an all-ones image (the FGDF downsampling normaliser). Default: True.

    Returns:
        tuple[Tensor, Tensor | None]: The warped, masked images (n, c, scale*h, scale*w) and the
        warped, masked all-ones image (n, 1, scale*h, scale*w), or ``None`` if ``with_ones`` is False.
    """
    flow = flow_mask[:, :2]
    mask = torch.sigmoid(flow_mask[:, 2:3])
    if scale != 1:
        flow = F.interpolate(flow, scale_factor=scale, mode='bilinear', align_corners=False) * scale
        mask = F.interpolate(mask, scale_factor=scale, mode='bilinear', align_corners=False)
    grid_flow = flow.permute(0, 2, 3, 1)
    warped = flow_warp(images, grid_flow) * mask
    if not with_ones:
        return warped, None
    ones = images.new_ones(images.shape[0], 1, *images.shape[2:])
    return warped, flow_warp(ones, grid_flow) * mask
