"""basicsr's own video models (``EDVRModel``, ``VideoRecurrentModel``) made to run on the CPU as well.

The training step, losses, optimizers (``dcn_lr_mul``, ``tsa_iter``, ``flow_lr_mul``, ``fix_flow``) and the
validation loop are basicsr's, unchanged; ``VideoModelDeviceMixin`` only moves basicsr's CUDA-only tensors
and DDP arguments to the model's device (see ``fmanet_plugin.compat``). On a GPU basicsr's classes work as
they are, so the paper-size options in ``options/baselines/`` use them directly and the CPU demo options use
these.
"""

from __future__ import annotations

from fmanet_plugin.compat import VideoModelDeviceMixin
from fmanet_plugin.models.resumable_save import ResumableSaveMixin

from basicsr.models.edvr_model import EDVRModel
from basicsr.models.video_recurrent_model import VideoRecurrentModel
from basicsr.utils.registry import MODEL_REGISTRY

# the keys of the ``val`` section (checked when the options are loaded: fmanet_plugin.utils.options): the training
# loop's (val_freq, save_img) and those basicsr's VideoBaseModel validation reads
_VIDEO_VAL_OPTIONS = ('val_freq', 'save_img', 'metrics', 'suffix')


@MODEL_REGISTRY.register()
class VSRDBEDVRModel(ResumableSaveMixin, VideoModelDeviceMixin, EDVRModel):
    """basicsr's ``EDVRModel`` (sliding-window video SR, centre frame out) on any device."""

    VAL_OPTIONS = _VIDEO_VAL_OPTIONS


@MODEL_REGISTRY.register()
class VSRDBVideoRecurrentModel(ResumableSaveMixin, VideoModelDeviceMixin, VideoRecurrentModel):
    """basicsr's ``VideoRecurrentModel`` (BasicVSR, IconVSR, BasicVSR++: all frames out) on any device."""

    VAL_OPTIONS = (*_VIDEO_VAL_OPTIONS, 'flip_seq', 'center_frame_only')  # VideoRecurrentModel's test()
