"""Calcfunctions: datasets from ``StructureData`` and quick in-process predictions, with provenance."""

from .dataset import create_dataset, dataset_from_structures
from .predict import predict_structures

__all__ = ["create_dataset", "dataset_from_structures", "predict_structures"]
