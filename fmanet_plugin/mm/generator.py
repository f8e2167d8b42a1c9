"""Registers the plugin's FMA-Net network (the same class BasicSR builds) as ``fmanet_plugin.FMANet``."""

from __future__ import annotations

from fmanet_plugin.archs.fmanet_arch import FMANet
from fmanet_plugin.mm.registry import MODELS

MODELS.register_module(name='FMANet', module=FMANet)
