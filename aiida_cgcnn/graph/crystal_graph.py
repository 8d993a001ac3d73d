"""The crystal graph: atoms as nodes, each atom's nearest periodic neighbours as directed edges."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InvalidStructureError
from ..structures import Crystal
from .neighbours import k_nearest_with_ties, periodic_neighbours

__all__ = ["GRAPH_FORMAT_VERSION", "CrystalGraph", "GraphSettings", "build_graph"]

#: Bumped whenever graph construction changes, so cached graphs from older code are never used.
GRAPH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class GraphSettings:
    """Every setting that changes a crystal graph; also the cache key and part of every checkpoint.

    Attributes
    ----------
    radius
        Neighbour search radius, Å.
    max_neighbors
        Neighbours kept per atom (more when tied with the last one).
    tie_tolerance
        Distances within this many Å of the ``max_neighbors``-th are ties and are kept.
    max_radius
        If set, atoms with no neighbour within ``radius`` make the search widen (x1.5 steps) up to
        this radius instead of failing.
    """

    radius: float = 8.0
    max_neighbors: int = 12
    tie_tolerance: float = 1e-5
    max_radius: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GraphSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def key(self) -> str:
        payload = json.dumps({"version": GRAPH_FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class CrystalGraph:
    """One crystal's graph.

    Edges point from neighbour (``src``) to centre (``dst``): messages flow into the centre atom.
    Edges are sorted by centre, then distance.
    """

    numbers: np.ndarray  # (n,) atomic numbers
    src: np.ndarray  # (m,) int32 neighbour atom
    dst: np.ndarray  # (m,) int32 centre atom
    distances: np.ndarray  # (m,) float32, Å
    images: np.ndarray  # (m, 3) int16 periodic image of the neighbour
    vectors: np.ndarray  # (m, 3) float32, Å: neighbour image minus centre

    @property
    def num_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def build_graph(crystal: Crystal, settings: GraphSettings = GraphSettings()) -> CrystalGraph:
    """Build the crystal graph of a validated :class:`Crystal`.

    Raises
    ------
    InvalidStructureError
        If an atom has no neighbour within the radius (and ``max_radius`` does not rescue it).
    """
    radius = settings.radius
    while True:
        centers, neighbours, images, distances = periodic_neighbours(
            crystal.lattice, crystal.frac_coords, radius
        )
        isolated = np.setdiff1d(np.arange(crystal.num_atoms), centers)
        if isolated.size == 0:
            break
        if settings.max_radius is None or radius >= settings.max_radius:
            raise InvalidStructureError(
                crystal.id,
                f"atoms {isolated[:10].tolist()} have no neighbour within {radius:g} Å",
                "check the cell, or allow a larger radius (GraphSettings.max_radius, --max-radius)",
            )
        radius = min(radius * 1.5, settings.max_radius)
    keep = k_nearest_with_ties(
        centers, distances, crystal.num_atoms, settings.max_neighbors, settings.tie_tolerance
    )
    if np.any(distances[keep] < 0.1):
        raise InvalidStructureError(
            crystal.id, "has overlapping atoms (closer than 0.1 Å)", "remove duplicate sites"
        )
    src, dst = neighbours[keep], centers[keep]
    cart = crystal.cart_coords
    vectors = cart[src] + images[keep] @ crystal.lattice - cart[dst]
    return CrystalGraph(
        numbers=crystal.numbers.astype(np.int16),
        src=src.astype(np.int32),
        dst=dst.astype(np.int32),
        distances=distances[keep].astype(np.float32),
        images=images[keep].astype(np.int16),
        vectors=vectors.astype(np.float32),
    )
