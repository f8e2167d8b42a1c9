"""Model-agnostic operators: occlusion-aware warping and flow-guided dynamic filtering (exported here), and the
chunked-execution primitives of :mod:`~fmanet_plugin.ops.chunked` and :mod:`~fmanet_plugin.ops.pointwise`.

Nothing in ``ops`` imports from ``archs``.
"""

from .fgdf import (
    fgdf_downsample,
    fgdf_downsample_chunked,
    fgdf_upsample,
    fgdf_upsample_rows,
    normalize_restoration_kernels,
)
from .warp import warp_image, warp_multi_flow

__all__ = [
    'warp_multi_flow',
    'warp_image',
    'fgdf_downsample',
    'fgdf_upsample',
    'normalize_restoration_kernels',
    'fgdf_downsample_chunked',
    'fgdf_upsample_rows',
]
