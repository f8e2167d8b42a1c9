"""FMA-Net (CVPR 2024) as a BasicSR plugin.

Importing this package makes ``import basicsr`` work on current torchvision (``fmanet_plugin.compat``)
and registers the plugin's archs, losses, datasets, models and metrics into BasicSR's registries.
"""

# isort: off
from fmanet_plugin import compat  # noqa: F401  (must run before anything imports basicsr)
from fmanet_plugin import archs, data, losses, metrics, models  # noqa: F401
# isort: on

__version__ = '0.1.0'
