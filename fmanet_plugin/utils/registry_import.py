"""BasicSR-style auto-import: import every ``*_<suffix>.py`` module of a sub-package to fill the registries."""

from __future__ import annotations

import importlib
from pathlib import Path


def import_modules(package_file: str, package_name: str, suffix: str) -> list:
    """Import all modules named ``*{suffix}.py`` next to ``package_file``.

    Args:
        package_file (str): ``__file__`` of the sub-package's ``__init__``.
        package_name (str): ``__name__`` of the sub-package.
        suffix (str): File-name suffix, e.g. ``'_arch'``.

    Returns:
        list: The imported modules.
    """
    folder = Path(package_file).parent
    names = sorted(p.stem for p in folder.glob(f'*{suffix}.py'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]
