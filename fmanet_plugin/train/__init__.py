"""Reliable BasicSR training: exact resume, crash-safe checkpoints, elastic restarts, divergence stops."""

from fmanet_plugin.train.training_error import TrainingError

__all__ = ['TrainingError']
