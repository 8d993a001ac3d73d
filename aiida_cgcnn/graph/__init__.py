"""Crystal graphs: neighbours, atom and edge features, batches."""

from .batch import Batch, GraphStore, build_graph_store
from .crystal_graph import CrystalGraph, GraphSettings, build_graph
from .features import ATOM_PROPERTIES, GaussianExpansion, atom_feature_table

__all__ = [
    "ATOM_PROPERTIES",
    "Batch",
    "CrystalGraph",
    "GaussianExpansion",
    "GraphSettings",
    "GraphStore",
    "atom_feature_table",
    "build_graph",
    "build_graph_store",
]
