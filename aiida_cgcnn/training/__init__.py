"""Training: the portable dataset, splits, the trainer, metrics and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import CrystalDataset, Skipped, load_dataset
from .trainer import LossDivergedError, TrainConfig, Trainer, TrainResult, split_indices

__all__ = [
    "CrystalDataset",
    "LossDivergedError",
    "Skipped",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "split_indices",
]
