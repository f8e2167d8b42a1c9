"""FMA-Net: flow-guided dynamic filtering and iterative feature refinement with multi-attention.

Youk, Oh, Kim, CVPR 2024 (arXiv 2401.03707). Joint video super-resolution and deblurring: from
``t = 2N+1`` blurry LR frames, predict the sharp HR centre frame. This is the reference
implementation; it reproduces the authors' released model (see ``tools/convert_official_ckpt.py``
for loading their checkpoints and ``tests/test_parity.py`` for the proof).

Internally the networks work on ``(b, c, t, h, w)`` tensors (the released 3-D convolution layout);
the public interface is BasicSR's ``(b, t, c, h, w)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fmanet_plugin.archs import fmanet_fast
from fmanet_plugin.ops import fgdf_downsample, fgdf_upsample, warp_image, warp_multi_flow

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

#: Values of ``FMANet(impl=...)``.
IMPLEMENTATIONS = ('fast', 'reference')


@ARCH_REGISTRY.register()
class FMANet(nn.Module):
    """FMA-Net: degradation learning network (Net_D) followed by the restoration network (Net_R).

    Args:
        in_channels (int): Image channels. Default: 3.
        dim (int): Feature channels ``C``; divisible by ``num_flow``, ``num_seq`` and ``num_heads``. Default: 90.
        ds_kernel_size (int): Degradation kernel size ``k_d`` (FGDF downsampling); ``k_d - scale`` even.
            Default: 20.
        us_kernel_size (int): Restoration kernel size ``k_r`` (FGDF upsampling), odd. Default: 5.
        num_rdb (int): Residual dense blocks in each feature extractor's RRDB. Default: 12.
        growth_rate (int): Channels added by each dense layer. Default: 18.
        num_dense_layer (int): Dense layers per RDB. Default: 4.
        num_flow (int): Flow-mask pairs ``n`` per frame. Default: 9.
        num_frma (int): FRMA blocks ``M`` per network. Default: 4.
        num_attn_block (int): Multi-attention blocks per FRMA block. Default: 2.
        num_heads (int): Attention heads. Default: 6.
        ffn_expansion_factor (float): Hidden width factor of the gated feed-forward networks. Default: 2.66.
        bias (bool): Bias in the convolutions (the RDB fusion convolutions always have one). Default: False.
        scale (int): Super-resolution factor ``s``. Default: 4.
        num_seq (int): Input frames ``t``, odd. Default: 3.
        stage (int): 1 builds Net_D only (degradation learning); 2 builds Net_D and Net_R. Default: 2.
        impl (str): ``'fast'`` runs the modules through :mod:`fmanet_plugin.archs.fmanet_fast` (same
            parameters, same outputs up to float round-off, ~2-3x faster on CPU with a fraction of the
            memory); ``'reference'`` runs the readable module-by-module forward below. Checkpoints are
            interchangeable. Default: ``'fast'``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 90,
        ds_kernel_size: int = 20,
        us_kernel_size: int = 5,
        num_rdb: int = 12,
        growth_rate: int = 18,
        num_dense_layer: int = 4,
        num_flow: int = 9,
        num_frma: int = 4,
        num_attn_block: int = 2,
        num_heads: int = 6,
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        scale: int = 4,
        num_seq: int = 3,
        stage: int = 2,
        impl: str = 'fast',
    ) -> None:
        super().__init__()
        _check_config(dim, ds_kernel_size, us_kernel_size, num_flow, num_heads, scale, num_seq, stage)
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f'FMANet: impl must be one of {IMPLEMENTATIONS}, got {impl!r}')
        self.impl = impl
        self.in_channels = in_channels
        self.scale = scale
        self.num_seq = num_seq
        self.stage = stage
        common = dict(
            in_channels=in_channels,
            dim=dim,
            num_rdb=num_rdb,
            growth_rate=growth_rate,
            num_dense_layer=num_dense_layer,
            num_flow=num_flow,
            num_frma=num_frma,
            num_attn_block=num_attn_block,
            num_heads=num_heads,
            ffn_expansion_factor=ffn_expansion_factor,
            bias=bias,
            num_seq=num_seq,
        )
        self.net_d = DegradationNet(ds_kernel_size=ds_kernel_size, **common)
        self.net_r = None
        if stage == 2:
            self.net_r = RestorationNet(
                us_kernel_size=us_kernel_size, ds_kernel_size=ds_kernel_size, scale=scale, **common
            )

    def forward(
        self, lq: torch.Tensor, gt: torch.Tensor | None = None, outputs: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Restore the centre frame.

        Args:
            lq (Tensor): Blurry LR frames of shape (b, t, c, h, w) in [0, 1].
            gt (Tensor | None): Sharp HR frames of shape (b, t, c, s*h, s*w); needed only for the
                re-synthesised LR frame ``recon`` and the warped HR frames ``hr_warp`` (training).
            outputs (Iterable[str] | None): Keys to return; None returns all of them. With ``impl='fast'``
                branches no requested key needs are skipped: ``outputs=('output',)`` is the inference
                mode (no temporal anchors, no Net_D image flow).

        Returns:
            dict[str, Tensor]: ``output`` (b, c, s*h, s*w) sharp HR centre frame (stage 2);
            ``recon`` (b, c, h, w) blurry LR centre frame re-synthesised from ``gt``; ``hr_warp``
            (b, t, c, s*h, s*w) ``gt`` warped to the centre; ``lr_warp`` (b, t, c, h, w) ``lq`` warped
            to the centre (stage 2); ``image_flow`` (b, t, 2, h, w) Net_D's image flow;
            ``anchor_d``/``anchor_r`` (b, t, c, h, w) temporal anchors of Net_D/Net_R.
        """
        self._check_inputs(lq, gt)
        wanted = self._wanted_outputs(gt, outputs)
        if self.impl == 'fast':
            return fmanet_fast.forward(self, lq, gt, wanted)
        x = lq.transpose(1, 2)
        y = None if gt is None else gt.transpose(1, 2)
        d = self.net_d(x, y, scale=self.scale)
        out = {
            'image_flow': d['image_flow_mask'][:, :2].transpose(1, 2),
            'anchor_d': d['anchor'].transpose(1, 2),
        }
        if y is not None:
            out['recon'] = d['recon']
            out['hr_warp'] = d['hr_warp']
        if self.net_r is not None:
            r = self.net_r(x, d['features'], d['flow_masks'], d['degradation_kernels'])
            out['output'] = r['output']
            out['lr_warp'] = r['lr_warp']
            out['anchor_r'] = r['anchor'].transpose(1, 2)
        return {key: value for key, value in out.items() if key in wanted}

    def _wanted_outputs(self, gt: torch.Tensor | None, outputs: Iterable[str] | None) -> set[str]:
        available = {'image_flow', 'anchor_d'}
        if gt is not None:
            available |= {'recon', 'hr_warp'}
        if self.net_r is not None:
            available |= {'output', 'lr_warp', 'anchor_r'}
        if outputs is None:
            return available
        wanted = {outputs} if isinstance(outputs, str) else set(outputs)
        if not wanted <= available:
            raise ValueError(
                f'FMANet: outputs {sorted(wanted - available)} are not available '
                f'(stage {self.stage}, gt {"given" if gt is not None else "not given"}); available: {sorted(available)}'
            )
        return wanted

    def _check_inputs(self, lq: torch.Tensor, gt: torch.Tensor | None) -> None:
        expected = f'(b, {self.num_seq}, {self.in_channels}, h, w)'
        if lq.dim() != 5 or lq.shape[1] != self.num_seq or lq.shape[2] != self.in_channels:
            raise ValueError(f'FMANet: lq must have shape {expected}, got {tuple(lq.shape)}')
        if gt is not None:
            b, t, c, h, w = lq.shape
            want = (b, t, c, h * self.scale, w * self.scale)
            if tuple(gt.shape) != want:
                raise ValueError(
                    f'FMANet: gt must have shape {want} (scale {self.scale} x the lq size), got {tuple(gt.shape)}'
                )


class DegradationNet(nn.Module):
    """Net_D: predicts motion-aware degradation kernels, image flows and temporal anchors.

    Args: see :class:`FMANet`.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        ds_kernel_size: int,
        num_rdb: int,
        growth_rate: int,
        num_dense_layer: int,
        num_flow: int,
        num_frma: int,
        num_attn_block: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        num_seq: int,
    ) -> None:
        super().__init__()
        self.num_flow = num_flow
        self.conv_first = conv_frame(in_channels, dim, bias)
        self.rrdb = RRDB(dim, num_rdb, growth_rate, num_dense_layer, bias)
        self.frma_blocks = nn.ModuleList(
            FRMABlock(
                dim,
                num_flow,
                num_seq,
                growth_rate,
                num_dense_layer,
                num_attn_block,
                num_heads,
                ffn_expansion_factor,
                bias,
                first_flow=(i == 0),
                first_fw=(i == 0),
                degradation_aware=False,
            )
            for i in range(num_frma)
        )
        self.image_flow_head = conv_head(3 * num_flow, 3 * num_flow, 3, bias)
        self.kernel_head = conv_head(dim // num_seq, dim, ds_kernel_size * ds_kernel_size, bias)
        self.anchor_head = conv_head(dim, dim, in_channels, bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, scale: int = 4) -> dict[str, torch.Tensor]:
        """Args:
            x (Tensor): Blurry LR frames (b, c, t, h, w).
            y (Tensor | None): Sharp HR frames (b, c, t, s*h, s*w), for ``recon``/``hr_warp``.
            scale (int): ``s``.

        Returns:
            dict[str, Tensor]: ``features`` (b, C, t, h, w), ``flow_masks`` (b, 3n, t, h, w),
            ``degradation_kernels`` (b, k_d*k_d, t, h, w), ``image_flow_mask`` (b, 3, t, h, w),
            ``anchor`` (b, c, t, h, w), and with ``y``: ``recon`` (b, c, h, w), ``hr_warp``
            (b, t, c, s*h, s*w).
        """
        b, _, t, h, w = x.shape
        feat0 = F.leaky_relu(self.conv_first(x), 0.2)
        feat0 = self.rrdb(feat0)
        centre = feat0[:, :, t // 2]
        feat, flow_masks, feat_warped = feat0, None, None
        for block in self.frma_blocks:
            feat, flow_masks, feat_warped = block(feat, centre, flow_masks, feat_warped)
        kernels = self.kernel_head(feat_warped.view(b, -1, t, h, w))
        image_flow_mask = self.image_flow_head(flow_masks)
        out = {
            'features': feat,
            'flow_masks': flow_masks,
            'degradation_kernels': kernels,
            'image_flow_mask': image_flow_mask,
            'anchor': self.anchor_head(feat),
        }
        if y is not None:
            c, height, width = y.shape[1], y.shape[3], y.shape[4]
            frames = y.transpose(1, 2).reshape(b * t, c, height, width)
            flow_mask = image_flow_mask.transpose(1, 2).reshape(b * t, 3, h, w)
            hr_warp, hr_ones = warp_image(frames, flow_mask, scale)
            hr_warp = hr_warp.view(b, t, c, height, width)
            out['hr_warp'] = hr_warp
            out['recon'] = fgdf_downsample(
                hr_warp, kernels.transpose(1, 2), scale, hr_ones.view(b, t, 1, height, width)
            )
        return out


class RestorationNet(nn.Module):
    """Net_R: restores the sharp HR centre frame using Net_D's features, flows and degradation kernels.

    Args: see :class:`FMANet`.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        us_kernel_size: int,
        ds_kernel_size: int,
        scale: int,
        num_rdb: int,
        growth_rate: int,
        num_dense_layer: int,
        num_flow: int,
        num_frma: int,
        num_attn_block: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        num_seq: int,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = conv_frame(in_channels + dim, dim, bias)
        self.rrdb = RRDB(dim, num_rdb, growth_rate, num_dense_layer, bias)
        self.flow_refine = conv_head(3 * num_flow, 3 * num_flow, 3 * num_flow, bias)
        self.kernel_embed = nn.Sequential(
            nn.Conv3d(ds_kernel_size * ds_kernel_size, dim, 3, padding=1, bias=bias),
            nn.LeakyReLU(0.2),
            nn.Conv3d(dim, dim, 3, padding=1, bias=bias),
        )
        self.frma_blocks = nn.ModuleList(
            FRMABlock(
                dim,
                num_flow,
                num_seq,
                growth_rate,
                num_dense_layer,
                num_attn_block,
                num_heads,
                ffn_expansion_factor,
                bias,
                first_flow=False,
                first_fw=(i == 0),
                degradation_aware=True,
            )
            for i in range(num_frma)
        )
        self.res_conv_in = nn.Conv2d(dim, dim, 3, padding=1, bias=bias)
        self.upsampler = PixelShuffleUpsampler(dim, bias)
        self.res_conv_out = nn.Conv2d(dim, in_channels, 3, padding=1, bias=bias)
        self.kernel_head = conv_head(dim // num_seq, dim, scale * scale * us_kernel_size * us_kernel_size, bias)
        self.image_flow_head = conv_head(3 * num_flow, 3 * num_flow, 3, bias)
        self.image_flow_refine = conv_head(3 * num_flow + 2 * in_channels, 3 * num_flow, 3, bias)
        self.anchor_head = conv_head(dim, dim, in_channels, bias)

    def forward(
        self, x: torch.Tensor, features_d: torch.Tensor, flow_masks: torch.Tensor, degradation_kernels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Args:
            x (Tensor): Blurry LR frames (b, c, t, h, w).
            features_d (Tensor): Net_D's final features (b, C, t, h, w).
            flow_masks (Tensor): Net_D's final flow-mask pairs (b, 3n, t, h, w).
            degradation_kernels (Tensor): Net_D's kernels (b, k_d*k_d, t, h, w).

        Returns:
            dict[str, Tensor]: ``output`` (b, c, s*h, s*w), ``lr_warp`` (b, t, c, h, w),
            ``anchor`` (b, c, t, h, w).
        """
        b, c, t, h, w = x.shape
        feat0 = F.leaky_relu(self.conv_first(torch.cat((x, features_d), dim=1)), 0.2)
        feat0 = self.rrdb(feat0)
        centre = feat0[:, :, t // 2]
        flow_masks = self.flow_refine(flow_masks)
        kernel_feat = self.kernel_embed(degradation_kernels)
        feat, feat_warped = feat0, None
        for block in self.frma_blocks:
            feat, flow_masks, feat_warped = block(feat, centre, flow_masks, feat_warped, kernel_feat)

        residual = self.res_conv_out(self.upsampler(F.leaky_relu(self.res_conv_in(feat_warped), 0.2)))
        kernels = self.kernel_head(feat_warped.view(b, -1, t, h, w))
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        # The image flow is predicted in two steps: a first estimate warps x, then it is re-estimated
        # from the flows, the warped frames and the centre frame.
        coarse = self.image_flow_head(flow_masks)
        coarse_warp = self._warp_frames(frames, coarse)
        centre_rep = x[:, :, t // 2 : t // 2 + 1].expand(-1, -1, t, -1, -1)
        image_flow_mask = self.image_flow_refine(torch.cat((flow_masks, coarse_warp, centre_rep), dim=1))
        lr_warp = self._warp_frames(frames, image_flow_mask).transpose(1, 2)
        output = fgdf_upsample(lr_warp, kernels.transpose(1, 2), self.scale) + residual
        return {'output': output, 'lr_warp': lr_warp, 'anchor': self.anchor_head(feat)}

    @staticmethod
    def _warp_frames(frames: torch.Tensor, flow_mask: torch.Tensor) -> torch.Tensor:
        """Warp (b*t, c, h, w) frames with a (b, 3, t, h, w) flow-mask; returns (b, c, t, h, w)."""
        b, _, t, h, w = flow_mask.shape
        warped, _ = warp_image(frames, flow_mask.transpose(1, 2).reshape(b * t, 3, h, w), with_ones=False)
        return warped.view(b, t, -1, h, w).transpose(1, 2)


class FRMABlock(nn.Module):
    """Iterative feature refinement with multi-attention.

    Refines the unwarped features ``F`` (RDB), the multi-flow-mask pairs ``f`` (residual update from the
    centre features, ``f`` and ``F`` warped by ``f``), and the warped centre feature ``Fw`` (fusion of
    ``Fw`` with ``F`` warped by the new ``f``, then multi-attention).

    Args:
        dim (int): Feature channels ``C``.
        num_flow (int): Flow-mask pairs ``n``.
        num_seq (int): Frames ``t``.
        growth_rate (int): Dense-layer growth of the RDBs.
        num_dense_layer (int): Dense layers per RDB.
        num_attn_block (int): Multi-attention blocks.
        num_heads (int): Attention heads.
        ffn_expansion_factor (float): Feed-forward hidden width factor.
        bias (bool): Convolution bias.
        first_flow (bool): No incoming flow: predict it from the centre and current features.
        first_fw (bool): No incoming ``Fw``: fuse the warped features only.
        degradation_aware (bool): Net_R variant with degradation-aware attention and its kernel features.
    """

    def __init__(
        self,
        dim: int,
        num_flow: int,
        num_seq: int,
        growth_rate: int,
        num_dense_layer: int,
        num_attn_block: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        first_flow: bool,
        first_fw: bool,
        degradation_aware: bool,
    ) -> None:
        super().__init__()
        self.num_flow = num_flow
        self.first_flow = first_flow
        self.rdb = RDB(dim, growth_rate, num_dense_layer, bias)
        flow_in = 2 * dim if first_flow else 2 * dim + 3 * num_flow
        self.flow_update = conv_head(flow_in, 3 * num_flow, 3 * num_flow, bias)
        fuse_in = num_seq * dim if first_fw else (num_seq + 1) * dim
        self.fuse_warped = nn.Conv2d(fuse_in, dim, 1, bias=bias)
        if degradation_aware:
            self.rdb_kernel = RDB(dim, growth_rate, num_dense_layer, bias)
            self.fuse_kernel = nn.Conv2d(num_seq * dim, dim, 1, bias=bias)
        self.attn_blocks = nn.ModuleList(
            MultiAttentionBlock(dim, num_heads, ffn_expansion_factor, bias, degradation_aware)
            for _ in range(num_attn_block)
        )

    def forward(
        self,
        feat: torch.Tensor,
        centre: torch.Tensor,
        flow_masks: torch.Tensor | None,
        feat_warped: torch.Tensor | None,
        kernel_feat: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            feat (Tensor): Unwarped features ``F`` (b, C, t, h, w).
            centre (Tensor): Initial centre-frame features ``F0_c`` (b, C, h, w).
            flow_masks (Tensor | None): Flow-mask pairs ``f`` (b, 3n, t, h, w), or None in the first block.
            feat_warped (Tensor | None): Warped centre feature ``Fw`` (b, C, h, w), or None in the first block.
            kernel_feat (Tensor | None): Degradation features ``k_D`` (b, C, t, h, w) (Net_R only).

        Returns:
            tuple[Tensor, Tensor, Tensor]: Updated ``F``, ``f`` and ``Fw``.
        """
        b, c, t, h, w = feat.shape
        feat = self.rdb(feat)
        centre_rep = centre.unsqueeze(2).expand(-1, -1, t, -1, -1)
        if flow_masks is None:
            flow_masks = self.flow_update(torch.cat((centre_rep, feat), dim=1))
        else:
            warped = self._warp(feat, flow_masks)
            flow_masks = flow_masks + self.flow_update(torch.cat((centre_rep, flow_masks, warped), dim=1))
        warped = self._warp(feat, flow_masks).reshape(b, c * t, h, w)
        fuse_in = warped if feat_warped is None else torch.cat((feat_warped, warped), dim=1)
        feat_warped = self.fuse_warped(fuse_in)
        kernel_query = None
        if kernel_feat is not None:
            kernel_query = self.fuse_kernel(self.rdb_kernel(kernel_feat).reshape(b, c * t, h, w))
        for block in self.attn_blocks:
            feat_warped = block(feat_warped, centre, kernel_query)
        return feat, flow_masks, feat_warped

    def _warp(self, feat: torch.Tensor, flow_masks: torch.Tensor) -> torch.Tensor:
        """Multi-flow warp in the (b, C, t, h, w) layout."""
        warped = warp_multi_flow(feat.transpose(1, 2), flow_masks.transpose(1, 2), self.num_flow)
        return warped.transpose(1, 2)


class MultiAttentionBlock(nn.Module):
    """Center-oriented (and, in Net_R, degradation-aware) transposed attention with gated feed-forwards.

    ``Fw += CO(LN(Fw), F0_c)``, ``Fw += FFN(LN(Fw))``; degradation-aware adds
    ``Fw += DA(LN(Fw), k_D)``, ``Fw += FFN(LN(Fw))``.

    Args:
        dim (int): Channels.
        num_heads (int): Attention heads.
        ffn_expansion_factor (float): Feed-forward hidden width factor.
        bias (bool): Convolution bias.
        degradation_aware (bool): Add the degradation-aware attention and its feed-forward.
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, degradation_aware: bool
    ) -> None:
        super().__init__()
        self.norm_co = ChannelLayerNorm(dim)
        self.co_attn = CrossChannelAttention(dim, num_heads, bias)
        self.norm_ffn_co = ChannelLayerNorm(dim)
        self.ffn_co = GatedFeedForward(dim, ffn_expansion_factor, bias)
        self.degradation_aware = degradation_aware
        if degradation_aware:
            self.norm_da = ChannelLayerNorm(dim)
            self.da_attn = CrossChannelAttention(dim, num_heads, bias)
            self.norm_ffn_da = ChannelLayerNorm(dim)
            self.ffn_da = GatedFeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor, centre: torch.Tensor, kernel_query: torch.Tensor | None) -> torch.Tensor:
        """(b, C, h, w) features, (b, C, h, w) centre query source, optional (b, C, h, w) kernel query source."""
        x = x + self.co_attn(self.norm_co(x), centre)
        x = x + self.ffn_co(self.norm_ffn_co(x))
        if self.degradation_aware:
            x = x + self.da_attn(self.norm_da(x), kernel_query)
            x = x + self.ffn_da(self.norm_ffn_da(x))
        return x


class CrossChannelAttention(nn.Module):
    """Transposed (channel-wise) attention whose queries come from another feature map.

    Args:
        dim (int): Channels.
        num_heads (int): Heads; ``dim`` must be divisible by it.
        bias (bool): Convolution bias.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.to_q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.to_q_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.to_kv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.to_kv_dw = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias)
        self.proj_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, query_source: torch.Tensor) -> torch.Tensor:
        """(b, C, h, w) keys/values source and (b, C, h, w) query source -> (b, C, h, w)."""
        b, c, h, w = x.shape
        q = self.to_q_dw(self.to_q(query_source)).view(b, self.num_heads, -1, h * w)
        k, v = self.to_kv_dw(self.to_kv(x)).chunk(2, dim=1)
        k = k.reshape(b, self.num_heads, -1, h * w)
        v = v.reshape(b, self.num_heads, -1, h * w)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.proj_out((attn @ v).view(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Gated depth-wise feed-forward network (Restormer's GDFN).

    Args:
        dim (int): Channels.
        ffn_expansion_factor (float): Hidden width is ``int(dim * ffn_expansion_factor)``.
        bias (bool): Convolution bias.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, h, w) -> (b, C, h, w)."""
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of every pixel of a (b, C, h, w) map (biased variance, eps 1e-5).

    Args:
        dim (int): Channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, h, w) -> (b, C, h, w)."""
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, eps=1e-5)
        return x.permute(0, 3, 1, 2)


class RRDB(nn.Module):
    """Residual in residual dense block over (b, C, t, h, w) features, frame by frame.

    Args:
        dim (int): Channels.
        num_rdb (int): RDBs in sequence; their outputs are concatenated and fused.
        growth_rate (int): Dense-layer growth.
        num_dense_layer (int): Dense layers per RDB.
        bias (bool): Convolution bias.
    """

    def __init__(self, dim: int, num_rdb: int, growth_rate: int, num_dense_layer: int, bias: bool) -> None:
        super().__init__()
        self.rdbs = nn.ModuleList(RDB(dim, growth_rate, num_dense_layer, bias) for _ in range(num_rdb))
        self.fusion = nn.Conv3d(num_rdb * dim, dim, 1, bias=bias)
        self.conv = conv_frame(dim, dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, t, h, w) -> (b, C, t, h, w)."""
        outs, feat = [], x
        for rdb in self.rdbs:
            feat = rdb(feat)
            outs.append(feat)
        return x + self.conv(self.fusion(torch.cat(outs, dim=1)))


class RDB(nn.Module):
    """Residual dense block: dense layers (conv + LeakyReLU, concatenated), 1x1 fusion with bias, residual.

    Args:
        dim (int): Channels.
        growth_rate (int): Channels added per dense layer.
        num_dense_layer (int): Dense layers.
        bias (bool): Bias of the dense-layer convolutions (the fusion always has one).
    """

    def __init__(self, dim: int, growth_rate: int, num_dense_layer: int, bias: bool) -> None:
        super().__init__()
        self.dense_layers = nn.ModuleList(
            conv_frame(dim + i * growth_rate, growth_rate, bias) for i in range(num_dense_layer)
        )
        self.fusion = nn.Conv3d(dim + num_dense_layer * growth_rate, dim, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, t, h, w) -> (b, C, t, h, w)."""
        feat = x
        for layer in self.dense_layers:
            feat = torch.cat((feat, F.leaky_relu(layer(feat), 0.2)), dim=1)
        return x + self.fusion(feat)


class PixelShuffleUpsampler(nn.Module):
    """x4 residual upsampler: (conv to 4C, LeakyReLU, pixel shuffle x2) twice, conv, LeakyReLU.

    Args:
        dim (int): Channels.
        bias (bool): Convolution bias.
    """

    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, 4 * dim, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(dim, 4 * dim, 3, padding=1, bias=bias)
        self.conv3 = nn.Conv2d(dim, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, h, w) -> (b, C, 4h, 4w)."""
        x = F.pixel_shuffle(F.leaky_relu(self.conv1(x), 0.2), 2)
        x = F.pixel_shuffle(F.leaky_relu(self.conv2(x), 0.2), 2)
        return F.leaky_relu(self.conv3(x), 0.2)


def conv_frame(in_channels: int, out_channels: int, bias: bool) -> nn.Conv3d:
    """A 3x3 convolution applied to every frame of a (b, c, t, h, w) tensor (Conv3d kernel (1, 3, 3))."""
    return nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1), bias=bias)


def conv_head(in_channels: int, mid_channels: int, out_channels: int, bias: bool) -> nn.Sequential:
    """Two per-frame 3x3 convolutions with a LeakyReLU between them."""
    return nn.Sequential(
        conv_frame(in_channels, mid_channels, bias), nn.LeakyReLU(0.2), conv_frame(mid_channels, out_channels, bias)
    )


def _check_config(
    dim: int,
    ds_kernel_size: int,
    us_kernel_size: int,
    num_flow: int,
    num_heads: int,
    scale: int,
    num_seq: int,
    stage: int,
) -> None:
    """Raise a ValueError naming the first invalid hyper-parameter."""
    if num_seq < 1 or num_seq % 2 == 0:
        raise ValueError(f'FMANet: num_seq must be odd (a centre frame with N neighbours each side), got {num_seq}')
    for name, divisor in (('num_flow', num_flow), ('num_seq', num_seq), ('num_heads', num_heads)):
        if divisor < 1 or dim % divisor:
            raise ValueError(f'FMANet: dim={dim} must be divisible by {name}={divisor}')
    if ds_kernel_size < scale or (ds_kernel_size - scale) % 2:
        raise ValueError(
            f'FMANet: ds_kernel_size - scale must be even and >= 0 (symmetric padding), '
            f'got ds_kernel_size={ds_kernel_size}, scale={scale}'
        )
    if us_kernel_size % 2 == 0:
        raise ValueError(f'FMANet: us_kernel_size must be odd (centred kernel), got {us_kernel_size}')
    if scale != 4:
        raise ValueError(f'FMANet: scale must be 4 (the residual branch upsamples by 2 x 2), got {scale}')
    if stage not in (1, 2):
        raise ValueError(f'FMANet: stage must be 1 (Net_D only) or 2 (Net_D and Net_R), got {stage}')
