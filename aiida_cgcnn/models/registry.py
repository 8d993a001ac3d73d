"""Model configuration (a plain dict, stored in checkpoints) to model."""

from __future__ import annotations

from typing import Any

import torch

from .alignn import ALIGNN
from .cgcnn import CGCNN

__all__ = ["ARCHITECTURES", "build_model", "model_defaults"]

ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"cgcnn": CGCNN, "alignn": ALIGNN}

_CGCNN_DEFAULTS = {
    "atom_fea_len": 64,
    "n_conv": 3,
    "h_fea_len": 128,
    "n_h": 1,
    "conv": "gated",
    "pooling": "mean",
    "dropout": 0.0,
    "dmin": 0.0,
    "dmax": 8.0,
    "step": 0.2,
}

# the ALIGNN paper's sizes (Eqs. 5-10 of the hybridization paper)
_ALIGNN_DEFAULTS = {
    "alignn_layers": 4,
    "gcn_layers": 4,
    "hidden_features": 256,
    "embedding_features": 64,
    "edge_bins": 80,
    "cutoff": 8.0,
    "angle_bins": 40,
    "norm": "batch",
    "precision": "float32",
    "backtracking": True,
    "pooling": "mean",
    "h_fea_len": 256,
    "n_h": 1,
    "dropout": 0.0,
}

_DEFAULTS = {"cgcnn": _CGCNN_DEFAULTS, "alignn": _ALIGNN_DEFAULTS}


def model_defaults(architecture: str) -> dict[str, Any]:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return dict(_DEFAULTS[architecture])


def build_model(config: dict[str, Any], atom_table: torch.Tensor) -> torch.nn.Module:
    """Build a model from ``config``: ``architecture``, ``out_features``, ``classification``,
    ``extra_features`` and the architecture's hyperparameters (defaults filled in)."""
    architecture = config.get("architecture", "cgcnn")
    params = model_defaults(architecture)
    unknown = set(config) - set(params) - {"architecture", "out_features", "classification", "extra_features"}
    if unknown == {"precision"}:
        raise ValueError(f"precision is an ALIGNN setting (--model alignn); {architecture} trains in float32")
    if unknown:
        raise ValueError(f"unknown model settings {sorted(unknown)} for {architecture}")
    params.update({k: v for k, v in config.items() if k != "architecture"})
    return ARCHITECTURES[architecture](atom_table, **params)
