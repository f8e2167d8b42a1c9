"""Reliable BasicSR training: exact resume, crash-safe checkpoints, elastic restarts, divergence stops."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """An expected training failure; ``tools/train.py`` prints its message as one line and exits non-zero."""
