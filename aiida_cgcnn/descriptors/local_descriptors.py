"""The 15 local descriptors, from the Voronoi faces of all sites at once.

Definitions are matminer's, statement by statement:

* ``StructuralHeterogeneity`` (faces weighted by area): per site the weighted mean bond length
  and the weighted mean absolute deviation of the bond lengths divided by that mean (the
  "neighbour distance variation"); bond lengths divided by their mean over sites; the cell volume
  as the sum of the face pyramids.
* ``AverageBondLength(VoronoiNN())``: per site the solid-angle-weighted mean bond length.
* ``AverageBondAngle(VoronoiNN())``: per site the mean, over neighbours, of the smallest angle
  between that neighbour and any other neighbour (all neighbours, not only adjacent ones).
* ``CoordinationNumber(VoronoiNN())``: the number of faces.
* ``SiteStatsFingerprint`` statistics: ``mean`` and ``std_dev`` (population standard deviation,
  0 for one site); ``PropertyStats.avg_dev`` is the mean absolute deviation.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidStructureError
from .voronoi import VoronoiFaces

__all__ = ["local_descriptors", "site_values"]


def _segment_mean(site: np.ndarray, values: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(site, values * weights, n) / np.bincount(site, weights, n)


def _avg_dev(values: np.ndarray) -> float:
    return float(np.mean(np.abs(values - values.mean())))


def _std(values: np.ndarray) -> float:
    return 0.0 if len(values) == 1 else float(np.std(values))


def _average_bond_angles(faces: VoronoiFaces, counts: np.ndarray) -> np.ndarray:
    """matminer's AverageBondAngle of every site (radians); NaN for a site with one neighbour."""
    n = faces.num_sites
    width = int(counts.max())
    starts = np.cumsum(counts) - counts
    slot = np.arange(len(faces.site)) - starts[faces.site]
    unit = np.zeros((n, width, 3))
    unit[faces.site, slot] = faces.vector / faces.distance[:, None]
    cosines = np.einsum("sad,sbd->sab", unit, unit)
    valid = np.arange(width)[None, :] < counts[:, None]
    pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(width, dtype=bool)[None]
    cosines = np.where(pair, cosines, -np.inf)
    # the smallest angle to another neighbour is the arccos of the largest cosine
    smallest = np.arccos(np.clip(cosines.max(axis=2), -1.0, 1.0))
    smallest = np.where(valid, smallest, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = smallest.sum(axis=1) / counts
    return np.where(counts >= 2, average, np.nan)


def site_values(faces: VoronoiFaces, face_tol: float) -> dict[str, np.ndarray]:
    """Per-site quantities behind the local descriptors.

    Returns
    -------
    dict
        ``avg_bond_len`` (Å), ``avg_bond_ang`` (rad), ``cn``, ``sh_bond_len`` (area-weighted mean
        bond length, Å), ``sh_dist_var`` (neighbour distance variation), ``cell_volume`` (Å³).
    """
    kept = faces.select(faces.relative(faces.solid_angle) > face_tol)
    n, site, distance = kept.num_sites, kept.site, kept.distance
    counts = np.bincount(site, minlength=n)
    sh_bond_len = _segment_mean(site, distance, kept.area, n)
    deviation = np.abs(distance - sh_bond_len[site])
    return {
        "avg_bond_len": _segment_mean(site, distance, kept.solid_angle, n),
        "avg_bond_ang": _average_bond_angles(kept, counts),
        "cn": counts.astype(np.float64),
        "sh_bond_len": sh_bond_len,
        "sh_dist_var": _segment_mean(site, deviation, kept.area, n) / sh_bond_len,
        "cell_volume": np.bincount(site, kept.volume, n),
    }


def local_descriptors(faces: VoronoiFaces, face_tol: float, structure_id: str = "") -> dict[str, float]:
    """The 15 local descriptors of one crystal from its Voronoi faces.

    Raises
    ------
    InvalidStructureError
        If a site has no Voronoi neighbour (cannot happen for a periodic crystal with distinct sites).
    """
    values = site_values(faces, face_tol)
    if np.any(values["cn"] == 0):
        raise InvalidStructureError(structure_id, "has a site without Voronoi neighbours")
    relative = values["sh_bond_len"] / values["sh_bond_len"].mean()
    variation = values["sh_dist_var"]
    volume = values["cell_volume"]
    return {
        "MAD_in_rela_bond_len": _avg_dev(relative),
        "max_rela_bond_len": float(relative.max()),
        "min_rela_bond_len": float(relative.min()),
        "min_neighb_dist_var": float(variation.min()),
        "max_neighb_dist_var": float(variation.max()),
        "range_neighb_dist_var": float(variation.max() - variation.min()),
        "mean_neighb_dist_var": float(variation.mean()),
        "dev_neighb_dist_var": _avg_dev(variation),
        "MAD_in_rela_atom_vol": _avg_dev(volume) / float(volume.mean()),
        "mean_avg_bond_len": float(values["avg_bond_len"].mean()),
        "std_avg_bond_len": _std(values["avg_bond_len"]),
        "mean_avg_bond_ang": float(values["avg_bond_ang"].mean()),
        "std_avg_bond_ang": _std(values["avg_bond_ang"]),
        "mean_CN_Voronoi": float(values["cn"].mean()),
        "std_CN_Voronoi": _std(values["cn"]),
    }
