"""Named training recipes: a ``model`` and a ``train`` section, as in a ``--config`` file.

``alignn-paper``
    ALIGNN as published (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021): the paper's sizes
    (the :mod:`~aiida_cgcnn.models.registry` defaults), AdamW with learning rate 10⁻³ and weight
    decay 10⁻⁵, batches of 64, 300 epochs, a one-cycle schedule stepped after every batch, L1 loss.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ConfigError

__all__ = ["PRESETS", "preset"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "alignn-paper": {
        "model": {"architecture": "alignn"},
        "train": {
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-5,
            "batch_size": 64,
            "epochs": 300,
            "scheduler": "onecycle",
            "loss": "l1",
        },
    },
}


def preset(name: str) -> dict[str, dict[str, Any]]:
    """A copy of the preset ``name`` (``{"model": {...}, "train": {...}}``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
