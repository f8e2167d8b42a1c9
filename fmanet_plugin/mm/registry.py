"""Child registries of mmengine's under the scope ``fmanet_plugin``.

A config names the plugin's modules as ``type='fmanet_plugin.<Name>'``; mmengine resolves such scoped names
from any default scope (``mmengine``, ``mmagic``, ...) by searching the root registry's children. The
``locations`` make a registry import :mod:`fmanet_plugin.mm` (which registers everything) on first use.
"""

from __future__ import annotations

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'fmanet_plugin'
_LOCATIONS = ['fmanet_plugin.mm']

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=_LOCATIONS)
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE, locations=_LOCATIONS)
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=_LOCATIONS)
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE, locations=_LOCATIONS)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE, locations=_LOCATIONS
)
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope=SCOPE, locations=_LOCATIONS)
