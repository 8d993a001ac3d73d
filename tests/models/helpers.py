"""Helpers for model tests: batches of crystals, checkpoints made from in-memory models."""

from __future__ import annotations

import numpy as np
import torch

from aiida_cgcnn.graph.batch import Batch, GraphStore
from aiida_cgcnn.graph.crystal_graph import GraphSettings, build_graph
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.models.registry import build_model
from aiida_cgcnn.predict import Predictor
from tests.builders import SMALL_MODEL

#: A small ALIGNN: every part of the model, a fraction of the paper's width.
SMALL_ALIGNN = {
    "architecture": "alignn",
    "alignn_layers": 2,
    "gcn_layers": 1,
    "hidden_features": 16,
    "embedding_features": 8,
    "edge_bins": 24,
    "angle_bins": 12,
    "h_fea_len": 16,
}
#: a handful of real JARVIS structures of different shapes and sizes
REAL_IDS = [
    "POSCAR-JVASP-64906.vasp",
    "POSCAR-JVASP-10.vasp",
    "POSCAR-JVASP-97570.vasp",
    "POSCAR-JVASP-14014.vasp",
    "POSCAR-JVASP-86205.vasp",
    "POSCAR-JVASP-1372.vasp",
]


def batch_of(crystals, settings: GraphSettings = GraphSettings()) -> Batch:
    store = GraphStore.from_graphs([build_graph(c, settings) for c in crystals])
    return store.batch(np.arange(len(store)))


def real_crystals_of(dataset) -> list:
    """The :data:`REAL_IDS` crystals of the JARVIS sample dataset."""
    index = {str(sid): k for k, sid in enumerate(dataset.ids)}
    return [dataset.crystal(index[sid]) for sid in REAL_IDS]


def predict(model, crystals) -> torch.Tensor:
    with torch.no_grad():
        return model(batch_of(crystals)).prediction


def small_model(
    seed: int = 0, warm_batch: Batch | None = None, base: dict | None = None, **config
) -> torch.nn.Module:
    """A small model (CGCNN, or the architecture of ``base``, e.g. :data:`SMALL_ALIGNN`) with random
    weights, non-trivial target scaling and (optionally) batch-norm running statistics taken from
    ``warm_batch``; returned in eval mode."""
    torch.manual_seed(seed)
    classification = config.get("classification", False)
    base = {"architecture": "cgcnn", **SMALL_MODEL} if base is None else base
    model = build_model({**base, **config}, atom_feature_table())
    if not classification:
        n = config.get("out_features", 1)
        model.head.set_normalisation(torch.full((n,), 1.5), torch.full((n,), 0.7))
    if warm_batch is not None:
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(warm_batch)
    return model.eval()


def checkpoint_of(model, settings: GraphSettings = GraphSettings(), task="regression", classes=()) -> dict:
    """The minimal checkpoint a Predictor reads, from an in-memory model."""
    config = {
        "architecture": "cgcnn",
        **SMALL_MODEL,
        "pooling": model.head.pooling,
        "out_features": model.head.out.out_features,
        "classification": model.head.classification,
        "conv": "simple" if type(model.convs[0]).__name__ == "SimpleConv" else "gated",
    }
    names = [f"t{i}" for i in range(config["out_features"])] if task == "regression" else ["class"]
    return {
        "model_config": config,
        "graph_settings": settings.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "targets": {"names": names, "units": ["eV"] * len(names), "task": task, "classes": list(classes)},
    }


def predictor_of(model, **kwargs) -> Predictor:
    return Predictor(checkpoint_of(model, **kwargs))
