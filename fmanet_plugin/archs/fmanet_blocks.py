"""Building blocks of FMA-Net shared by Net_D and Net_R: parameter tree and reference forward.

The modules hold the parameters (their names are the checkpoint keys) and a readable module-by-module
forward, the oracle that the parity tests pin to the authors' released model. The fast executor
(:mod:`fmanet_plugin.archs.fmanet_fast`) runs the same parameters; it reads them through the small
accessors documented here rather than by position.

Features are ``(b, C, t, h, w)`` (the released 3-D convolution layout) or, for the warped centre feature
``Fw``, ``(b, C, h, w)``.
"""

from __future__ import annotations

from fmanet_plugin.archs.fmanet_config import FMANetConfig
from fmanet_plugin.ops import warp_multi_flow
from fmanet_plugin.utils.phase_profile import phase

import torch
import torch.nn.functional as F
from torch import nn


class FRMABlock(nn.Module):
    """Iterative feature refinement with multi-attention.

    Refines the unwarped features ``F`` (RDB), the multi-flow-mask pairs ``f`` (residual update from the
    centre features, ``f`` and ``F`` warped by ``f``), and the warped centre feature ``Fw`` (fusion of
    ``Fw`` with ``F`` warped by the new ``f``, then multi-attention).

    Args:
        config (FMANetConfig): Hyper-parameters.
        first_flow (bool): No incoming flow: predict it from the centre and current features.
        first_fw (bool): No incoming ``Fw``: fuse the warped features only.
        degradation_aware (bool): Net_R variant with degradation-aware attention and its kernel features.
    """

    def __init__(self, config: FMANetConfig, first_flow: bool, first_fw: bool, degradation_aware: bool) -> None:
        super().__init__()
        dim, num_seq, bias = config.dim, config.num_seq, config.bias
        self.num_flow, self.num_seq = config.num_flow, num_seq
        self.first_flow, self.first_fw = first_flow, first_fw
        self.degradation_aware = degradation_aware
        self.rdb = RDB(dim, config.growth_rate, config.num_dense_layer, bias)
        flow_in = 2 * dim if first_flow else 2 * dim + config.flow_channels
        self.flow_update = ConvHead(flow_in, config.flow_channels, config.flow_channels, bias)
        fuse_in = num_seq * dim if first_fw else (num_seq + 1) * dim
        self.fuse_warped = nn.Conv2d(fuse_in, dim, 1, bias=bias)
        if degradation_aware:
            self.rdb_kernel = RDB(dim, config.growth_rate, config.num_dense_layer, bias)
            self.fuse_kernel = nn.Conv2d(num_seq * dim, dim, 1, bias=bias)
        self.attn_blocks = nn.ModuleList(
            MultiAttentionBlock(dim, config.num_heads, config.ffn_expansion_factor, bias, degradation_aware)
            for _ in range(config.num_attn_block)
        )

    def flow_update_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Input-channel slices of the flow update's first (per-frame 3x3) weight, (c_out, c_in_part, 3, 3) each:
        the centre features' part, the flow-mask pairs' part (None in the first block) and the (warped)
        features' part, in the order of the concatenation the reference convolves."""
        weight = frame_weight(self.flow_update.hidden_conv)
        dim = self.fuse_warped.out_channels
        flows = None if self.first_flow else weight[:, dim : weight.shape[1] - dim]
        return weight[:, :dim], flows, weight[:, weight.shape[1] - dim :]

    def fuse_warped_weights(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(C, C) matrix of the incoming ``Fw`` (None in the first block) and (C, C*t) matrix of the warped
        features folded into channels (channel ``c * t + frame``), slices of ``fuse_warped``'s weight."""
        matrix = pointwise_matrix(self.fuse_warped)
        dim = matrix.shape[0]
        return (None if self.first_fw else matrix[:, :dim]), matrix[:, matrix.shape[1] - dim * self.num_seq :]

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
        with phase('attention'):
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

    def residual_layers(self) -> list[tuple[ChannelLayerNorm, nn.Module]]:
        """``(pre-norm, layer)`` of the residual updates in order: the centre-oriented attention, its feed-forward
        and, degradation-aware, the degradation-aware attention and its feed-forward. The attentions
        (:class:`CrossChannelAttention`) take their query source, ``F0_c`` then ``k_D``, as a second argument."""
        layers = [(self.norm_co, self.co_attn), (self.norm_ffn_co, self.ffn_co)]
        if self.degradation_aware:
            layers += [(self.norm_da, self.da_attn), (self.norm_ffn_da, self.ffn_da)]
        return layers

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
        self.hidden_channels = hidden
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

    def dense_weights(self) -> list[torch.Tensor]:
        """Dense layer ``i``'s (growth, C + i * growth, 3, 3) weight, input channels in the order of the
        concatenation ``(x, o_0, ..., o_{i-1})`` it convolves."""
        return [frame_weight(layer) for layer in self.dense_layers]

    def dense_bias(self) -> torch.Tensor | None:
        """The dense layers' biases, concatenated in layer order, or None without bias."""
        biases = [layer.bias for layer in self.dense_layers]
        return None if biases[0] is None else torch.cat(biases)

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


class ConvHead(nn.Sequential):
    """Two 3-D convolutions with a LeakyReLU(0.2) between them (children ``0``, ``1``, ``2``: the checkpoint keys).

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Hidden channels.
        out_channels (int): Output channels.
        bias (bool): Convolution bias.
        temporal (bool): 3x3x3 kernels with zero padding 1 in time too; otherwise per-frame 3x3 kernels
            (see :func:`conv_frame`). Default: False.
    """

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, bias: bool, temporal: bool = False
    ) -> None:
        kernel, padding = (3, 1) if temporal else ((1, 3, 3), (0, 1, 1))
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, kernel, padding=padding, bias=bias),
            nn.LeakyReLU(0.2),
            nn.Conv3d(mid_channels, out_channels, kernel, padding=padding, bias=bias),
        )

    @property
    def hidden_conv(self) -> nn.Conv3d:
        """The first convolution (its output goes through the LeakyReLU)."""
        return self[0]

    @property
    def output_conv(self) -> nn.Conv3d:
        """The second convolution (the head's output)."""
        return self[2]


def pointwise_matrix(conv: nn.Module) -> torch.Tensor:
    """The (c_out, c_in) weight matrix of a 1x1 (or 1x1x1) convolution without groups, as a view."""
    return conv.weight.view(conv.weight.shape[0], -1)


def frame_weight(conv: nn.Module) -> torch.Tensor:
    """The 4-D (c_out, c_in, kh, kw) weight of a per-frame Conv3d (kernel depth 1) or of a Conv2d, as a view."""
    return conv.weight.squeeze(2) if conv.weight.dim() == 5 else conv.weight
