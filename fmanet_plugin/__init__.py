"""FMA-Net (CVPR 2024) as a BasicSR plugin.

Importing this package makes ``import basicsr`` work on current torchvision (``fmanet_plugin.compat``)
and registers the plugin's archs, losses, datasets, models and metrics into BasicSR's registries.
"""

from fmanet_plugin import (  # noqa: F401, E402
    archs,
    compat,  # noqa: F401  (must run before anything imports basicsr)
    data,
    losses,
    metrics,
    models,
)

__version__ = '0.1.0'
