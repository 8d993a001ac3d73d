"""Periodic neighbour search: compiled cell-list search, then the k nearest per atom with ties kept."""

from __future__ import annotations

import numpy as np

__all__ = ["k_nearest_with_ties", "periodic_neighbours"]


def periodic_neighbours(
    lattice: np.ndarray, frac_coords: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All periodic neighbour pairs within ``radius`` (Å), self-pairs at zero distance excluded.

    Returns
    -------
    centers, neighbours, images, distances
        Atom indices (int64), periodic image offsets of the neighbour (int, shape (m, 3)) and
        distances (Å, float64).
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres

    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    cart = np.ascontiguousarray(frac_coords @ lattice, dtype=np.float64)
    centers, neighbours, images, distances = find_points_in_spheres(
        cart, cart, float(radius), np.array([1, 1, 1], dtype=np.int64), lattice, tol=1e-8
    )
    keep = ~((centers == neighbours) & (distances < 1e-8) & np.all(images == 0, axis=1))
    return (
        centers[keep].astype(np.int64),
        neighbours[keep].astype(np.int64),
        images[keep],
        distances[keep],
    )


def k_nearest_with_ties(
    centers: np.ndarray, distances: np.ndarray, num_atoms: int, k: int, tie_tolerance: float
) -> np.ndarray:
    """Indices (into the pair arrays) of each centre's k nearest pairs, sorted by (centre, distance).

    Pairs tied with the k-th distance (within ``tie_tolerance`` Å) are kept too, so a symmetric
    shell is never split; atoms with fewer than k pairs keep all of them (variable degree).
    """
    order = np.lexsort((distances, centers))
    sorted_centers = centers[order]
    sorted_distances = distances[order]
    counts = np.bincount(sorted_centers, minlength=num_atoms)
    starts = np.cumsum(counts) - counts
    kth = np.full(num_atoms, np.inf)
    full = counts >= k
    kth[full] = sorted_distances[starts[full] + k - 1]
    keep = sorted_distances <= kth[sorted_centers] + tie_tolerance
    return order[keep]
