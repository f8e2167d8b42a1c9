"""FMA-Net for OpenMMLab users: mmengine registries, model, data pipeline and metrics (optional sub-package).

Configs import it with ``custom_imports = dict(imports=['fmanet_plugin.mm'])`` and name its modules
``type='fmanet_plugin.<Name>'``. The BasicSR side of the plugin (``import fmanet_plugin``) never imports this
package, so mmengine/mmcv are needed only here. Everything reuses the plugin's network, losses, data readers and
metric functions.
"""

from fmanet_plugin.mm import (  # noqa: F401  (registration)
    augmentation,
    data_preprocessor,
    dataset,
    formatting,
    generator,
    image_metrics,
    loading,
    optim,
    restorer,
    runner,
    tof,
)
from fmanet_plugin.mm.checkpoint import allow_mmengine_checkpoints
from fmanet_plugin.mm.registry import (
    DATASETS,
    METRICS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    RUNNERS,
    SCOPE,
    TRANSFORMS,
)

allow_mmengine_checkpoints()

__all__ = ['DATASETS', 'METRICS', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'RUNNERS', 'SCOPE', 'TRANSFORMS']
