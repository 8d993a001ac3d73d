"""Periodic Voronoi cells of every site of a crystal, from one tessellation.

pymatgen's ``VoronoiNN.get_nn_info`` tessellates all atoms within 13 Å of *one* site, for every site
and every featurizer that asks, and walks the result in Python: ~10-50 ms per site. Here the cells
of all sites come from a single Qhull run over just enough periodic images, and the face geometry
(solid angle, area, pyramid volume) is computed for all faces at once with NumPy.

Exactness: a site's cell depends only on points closer than twice its circumradius R (the bisector
plane of a point farther away lies beyond every vertex). The image cloud is grown until every
root cell is bounded and ``2 R < cutoff``, so the cells equal those of the infinite crystal,
which is what ``VoronoiNN`` computes whenever its 13 Å sphere suffices. The face formulas are
pymatgen's: ``solid_angle`` (Van Oosterom-Strackee on a triangle fan), ``vol_tetra`` pyramids, and
area = 3 V / face distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidStructureError
from ..structures import Crystal

__all__ = ["VoronoiFaces", "voronoi_faces"]

#: Largest number of tessellations tried while growing the image cloud.
_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class VoronoiFaces:
    """The faces of the Voronoi cells of all sites of one crystal, sorted by site.

    Attributes
    ----------
    site
        Index of the site whose cell the face belongs to, shape (m,).
    neighbour
        Index of the site on the other side of the face (a periodic image of it), shape (m,).
    vector
        Neighbour position minus site position, Å, shape (m, 3).
    distance
        Length of ``vector`` (twice pymatgen's ``face_dist``), Å, shape (m,).
    solid_angle
        Solid angle the face subtends at the site, sr, shape (m,).
    area
        Face area, Å², shape (m,).
    volume
        Volume of the pyramid from the site to the face, Å³, shape (m,); a cell's volume is their sum.
    num_sites
        Number of sites of the crystal.
    cutoff
        Radius of the image cloud that made every cell exact, Å.
    """

    site: np.ndarray
    neighbour: np.ndarray
    vector: np.ndarray
    distance: np.ndarray
    solid_angle: np.ndarray
    area: np.ndarray
    volume: np.ndarray
    num_sites: int
    cutoff: float

    def select(self, mask: np.ndarray) -> VoronoiFaces:
        """The faces where ``mask`` is true."""
        return VoronoiFaces(
            self.site[mask],
            self.neighbour[mask],
            self.vector[mask],
            self.distance[mask],
            self.solid_angle[mask],
            self.area[mask],
            self.volume[mask],
            self.num_sites,
            self.cutoff,
        )

    def relative(self, values: np.ndarray) -> np.ndarray:
        """``values`` divided by their maximum within each site's cell (pymatgen's weights)."""
        largest = np.full(self.num_sites, -np.inf)
        np.maximum.at(largest, self.site, values)
        return values / largest[self.site]


def _image_cloud(
    lattice: np.ndarray, cart: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """All periodic images within ``cutoff`` of any site: positions and site indices (sites first),
    and the shortest distance between two different atoms, Å."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    center, index, images, distances = find_points_in_spheres(
        cart, cart, float(cutoff), np.array([1, 1, 1], dtype=np.int64), lattice, tol=1e-8
    )
    itself = (center == index) & np.all(images == 0, axis=1)
    shortest = float(distances[~itself].min()) if np.any(~itself) else np.inf
    n = len(cart)
    # each (site, image) once, although it is within the cutoff of several sites
    pairs = np.unique(np.column_stack([index, np.rint(images)]).astype(np.int64), axis=0)
    pairs = pairs[np.any(pairs[:, 1:] != 0, axis=1)]  # the sites themselves come first, below
    index = pairs[:, 0]
    positions = np.concatenate([cart, cart[index] + pairs[:, 1:] @ lattice])
    return positions, np.concatenate([np.arange(n), index]), shortest


def _fan_triangles(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For polygons with ``lengths`` vertices stored back to back: the triangle fan (0, j, j+1)
    of each, as (polygon, offset of j within the polygon, polygon start)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n_triangles = np.maximum(lengths - 2, 0)
    polygon = np.repeat(np.arange(len(lengths)), n_triangles)
    first = np.cumsum(n_triangles) - n_triangles
    j = np.arange(n_triangles.sum()) - np.repeat(first, n_triangles) + 1
    return polygon, j, starts


def _solid_angles_and_volumes(
    centers: np.ndarray, vertices: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Solid angle and pyramid volume of each polygon seen from its centre (pymatgen's formulas).

    ``vertices`` holds the polygons' vertices back to back (Qhull lists them in cyclic order).
    """
    polygon, j, starts = _fan_triangles(lengths)
    c = centers[polygon]
    v0 = vertices[starts[polygon]]
    vj = vertices[starts[polygon] + j]
    vk = vertices[starts[polygon] + j + 1]
    # solid angle of the triangle (v0, vj, vk): Van Oosterom & Strackee, as pymatgen.solid_angle
    d0, dj, dk = v0 - c, vj - c, vk - c
    r0, rj, rk = (np.linalg.norm(d, axis=1) for d in (d0, dj, dk))
    triple = np.abs(np.einsum("ij,ij->i", d0, np.cross(dj, dk)))
    denominator = (
        r0 * rj * rk
        + rk * np.einsum("ij,ij->i", d0, dj)
        + rj * np.einsum("ij,ij->i", d0, dk)
        + r0 * np.einsum("ij,ij->i", dj, dk)
    )
    # arctan2 is pymatgen's branch logic, except that a degenerate triangle counts 0, not 2π
    angle = 2.0 * np.arctan2(triple, denominator)
    # pyramid volume as pymatgen.vol_tetra(center, v0, vj, vk)
    tetra = np.abs(np.einsum("ij,ij->i", c - vk, np.cross(v0 - vk, vj - vk))) / 6.0
    n = len(lengths)
    return np.bincount(polygon, angle, minlength=n), np.bincount(polygon, tetra, minlength=n)


def voronoi_faces(crystal: Crystal, cutoff: float | None = None) -> VoronoiFaces:
    """The Voronoi faces of every site of ``crystal`` (all faces, degenerate ones included).

    Parameters
    ----------
    crystal
        A validated crystal.
    cutoff
        Initial radius of the image cloud, Å; grown as needed (default from the volume per atom).

    Raises
    ------
    InvalidStructureError
        If Qhull fails or the cells cannot be closed (e.g. overlapping atoms).
    """
    from scipy.spatial import QhullError, Voronoi

    lattice = np.ascontiguousarray(crystal.lattice, dtype=np.float64)
    cart = np.ascontiguousarray(crystal.frac_coords @ lattice, dtype=np.float64)
    n = len(cart)
    volume_per_atom = abs(float(np.linalg.det(lattice))) / n
    if cutoff is None:
        # about twice the circumradius of a typical cell; grown below when a cell is larger
        cutoff = max(4.0, 2.6 * volume_per_atom ** (1.0 / 3.0))
    for _ in range(_MAX_ATTEMPTS):
        positions, index, shortest = _image_cloud(lattice, cart, cutoff)
        if shortest < 0.1:
            raise InvalidStructureError(
                crystal.id, "has overlapping atoms (closer than 0.1 Å)", "remove duplicate sites"
            )
        try:
            tessellation = Voronoi(positions)
        except QhullError as error:
            raise InvalidStructureError(
                crystal.id,
                f"has no Voronoi tessellation (Qhull: {str(error).splitlines()[0]})",
                "check for overlapping atoms",
            ) from None
        ridge_points = tessellation.ridge_points
        ends = np.concatenate([ridge_points[:, 0], ridge_points[:, 1]])
        others = np.concatenate([ridge_points[:, 1], ridge_points[:, 0]])
        ridges = np.concatenate([np.arange(len(ridge_points))] * 2)
        root = ends < n
        ends, others, ridges = ends[root], others[root], ridges[root]
        order = np.lexsort((others, ends))
        ends, others, ridges = ends[order], others[order], ridges[order]
        vertex_lists = [tessellation.ridge_vertices[r] for r in ridges.tolist()]
        lengths = np.fromiter(map(len, vertex_lists), dtype=np.int64, count=len(vertex_lists))
        flat = np.fromiter(
            (v for vertices in vertex_lists for v in vertices), dtype=np.int64, count=int(lengths.sum())
        )
        sites_with_faces = np.unique(ends)
        if np.any(flat < 0) or len(sites_with_faces) < n:
            cutoff *= 1.5  # an open cell: the cloud does not surround every site yet
            continue
        vertices = tessellation.vertices[flat]
        radius = np.linalg.norm(vertices - cart[np.repeat(ends, lengths)], axis=1)
        if 2.0 * radius.max() >= cutoff - 1e-6:
            cutoff = max(cutoff * 1.25, 2.0 * radius.max() + 0.5)
            continue
        break
    else:
        raise InvalidStructureError(
            crystal.id,
            f"has Voronoi cells that stay open up to a {cutoff:.1f} Å image cloud",
            "check the cell and the coordinates",
        )
    vector = positions[others] - cart[ends]
    solid_angle, pyramid = _solid_angles_and_volumes(cart[ends], vertices, lengths)
    distance = np.linalg.norm(vector, axis=1)
    return VoronoiFaces(
        site=ends,
        neighbour=index[others],
        vector=vector,
        distance=distance,
        solid_angle=solid_angle,
        area=3.0 * pyramid / (0.5 * distance),
        volume=pyramid,
        num_sites=n,
        cutoff=float(cutoff),
    )
