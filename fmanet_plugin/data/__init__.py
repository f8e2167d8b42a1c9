"""Registers every ``*_dataset.py`` module of this folder into BasicSR's registries (BasicSR's convention)."""

from fmanet_plugin.utils.registry_import import import_modules

_modules = import_modules(__file__, __name__, '_dataset')
