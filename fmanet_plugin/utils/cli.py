"""Command-line parsing and table formatting shared by the tools."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def size_type(minimum: int = 1) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type`` reading ``HxW`` (e.g. ``180x320``) into ``(h, w)``, both at least ``minimum``."""

    def parse_size(text: str) -> tuple[int, int]:
        try:
            height, width = (int(v) for v in text.lower().split('x'))
        except ValueError:
            raise argparse.ArgumentTypeError(f'size must look like HxW (e.g. 180x320), got {text!r}') from None
        if height < minimum or width < minimum:
            raise argparse.ArgumentTypeError(f'size must be at least {minimum}x{minimum}, got {text!r}')
        return height, width

    return parse_size


parse_size = size_type()


def parse_choices(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """A comma-separated, non-empty subset of ``allowed``; exits with one line naming ``option`` otherwise."""
    values = [v.strip() for v in text.split(',') if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise SystemExit(f'{option}: expected a comma-separated subset of {allowed}, got {text!r}')
    return values


def format_number(value: float | None, digits: int) -> str:
    """Fixed-point text for tables; '-' for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{digits}f}'
