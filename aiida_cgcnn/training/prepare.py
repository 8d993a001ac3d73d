"""From a dataset to graphs ready for training or prediction, with invalid structures handled."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError
from ..graph.batch import GraphStore, build_graph_store
from ..graph.crystal_graph import GraphSettings
from .dataset import CrystalDataset, Skipped, _invalid_message

__all__ = ["PreparedData", "prepare_graphs"]


@dataclass
class PreparedData:
    dataset: CrystalDataset  # valid structures only
    graphs: GraphStore  # aligned with ``dataset``
    skipped: list[Skipped]


def prepare_graphs(
    dataset: CrystalDataset,
    settings: GraphSettings,
    skip_invalid: bool = False,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
) -> PreparedData:
    """Build (or load cached) graphs; structures whose graph fails are an error or, with
    ``skip_invalid``, left out and reported."""
    store, failures = build_graph_store(
        list(dataset.crystals()),
        settings,
        workers=workers,
        cache_dir=cache_dir,
        structure_hash=dataset.structure_hash(),
    )
    skipped = [Skipped(str(dataset.ids[position]), message) for position, message in failures]
    if skipped and not skip_invalid:
        raise DatasetError(_invalid_message(skipped))
    if skipped:
        bad = np.array([position for position, _ in failures], dtype=np.int64)
        dataset = dataset.subset(np.setdiff1d(np.arange(len(dataset)), bad))
    if len(dataset) == 0:
        raise DatasetError("the dataset is empty: no structure gave a valid graph")
    return PreparedData(dataset, store, skipped)
