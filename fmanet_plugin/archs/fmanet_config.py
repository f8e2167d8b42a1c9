"""FMA-Net's hyper-parameters: one validated record shared by :class:`FMANet` and its two networks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FMANetConfig:
    """Hyper-parameters of FMA-Net (defaults: the released model).

    Args:
        in_channels (int): Image channels. Default: 3.
        dim (int): Feature channels ``C``; divisible by ``num_flow``, ``num_seq`` and ``num_heads``. Default: 90.
        ds_kernel_size (int): Degradation kernel size ``k_d`` (FGDF downsampling); ``k_d - scale`` even and
            non-negative. Default: 20.
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
        scale (int): Super-resolution factor ``s``; must be 4. Default: 4.
        num_seq (int): Input frames ``t``, odd. Default: 3.

    Raises:
        ValueError: Naming the first invalid hyper-parameter and what it must be.
    """

    in_channels: int = 3
    dim: int = 90
    ds_kernel_size: int = 20
    us_kernel_size: int = 5
    num_rdb: int = 12
    growth_rate: int = 18
    num_dense_layer: int = 4
    num_flow: int = 9
    num_frma: int = 4
    num_attn_block: int = 2
    num_heads: int = 6
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    scale: int = 4
    num_seq: int = 3

    def __post_init__(self) -> None:
        if self.num_seq < 1 or self.num_seq % 2 == 0:
            raise ValueError(
                f'FMANet: num_seq must be odd (a centre frame with N neighbours each side), got {self.num_seq}'
            )
        for name in ('num_flow', 'num_seq', 'num_heads'):
            divisor = getattr(self, name)
            if divisor < 1 or self.dim % divisor:
                raise ValueError(f'FMANet: dim={self.dim} must be divisible by {name}={divisor}')
        if self.ds_kernel_size < self.scale or (self.ds_kernel_size - self.scale) % 2:
            raise ValueError(
                f'FMANet: ds_kernel_size - scale must be even and >= 0 (symmetric padding), '
                f'got ds_kernel_size={self.ds_kernel_size}, scale={self.scale}'
            )
        if self.us_kernel_size % 2 == 0:
            raise ValueError(f'FMANet: us_kernel_size must be odd (centred kernel), got {self.us_kernel_size}')
        if self.scale != 4:
            raise ValueError(f'FMANet: scale must be 4 (the residual branch upsamples by 2 x 2), got {self.scale}')

    @property
    def flow_channels(self) -> int:
        """Channels ``3n`` of the flow-mask pairs (flow x, flow y, occlusion logit per pair)."""
        return 3 * self.num_flow

    @property
    def frame_channels(self) -> int:
        """Channels ``C / t`` of one frame's share of the warped centre feature ``Fw`` (the kernel heads' input)."""
        return self.dim // self.num_seq
