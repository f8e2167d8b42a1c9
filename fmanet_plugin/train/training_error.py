"""The exception type of expected training failures."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """An expected training failure; ``tools/train.py`` prints its message as one line and exits non-zero."""
