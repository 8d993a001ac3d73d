"""Descriptors of one crystal, of many crystals in parallel, and as model inputs.

One Voronoi tessellation per crystal feeds all 15 local descriptors; two spglib calls and one Niggli
reduction give the global ones. A structure whose requested descriptors cannot be computed (no
symmetry found, an element without an atomic radius for ``packing_frac``) is reported by id and
never gets NaN values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from ..errors import InvalidStructureError
from ..structures import Crystal
from .definitions import (
    CRYSTAL_SYSTEMS,
    LOCAL_DESCRIPTORS,
    DescriptorSettings,
    descriptor_columns,
    resolve_names,
)
from .global_descriptors import global_descriptors
from .local_descriptors import local_descriptors
from .voronoi import voronoi_faces

__all__ = [
    "DescriptorTable",
    "compute_descriptors",
    "crystal_descriptors",
    "elements_without_descriptors",
    "to_columns",
]

_CHUNK = 16  # crystals per task: large enough to amortise inter-process traffic


def crystal_descriptors(
    crystal: Crystal, names: str | Sequence[str] | None = None, settings: DescriptorSettings | None = None
) -> dict[str, float]:
    """The descriptors ``names`` (default: the paper's 28) of one validated crystal.

    Raises
    ------
    InvalidStructureError
        Naming the crystal and the descriptor that cannot be computed.
    """
    names = resolve_names(names)
    settings = settings or DescriptorSettings()
    wanted = set(names)
    values: dict[str, float] = {}
    if wanted & set(LOCAL_DESCRIPTORS):
        faces = voronoi_faces(crystal)
        values.update(local_descriptors(faces, settings.face_tol, crystal.id))
    if wanted - set(LOCAL_DESCRIPTORS):
        values.update(global_descriptors(crystal, settings, wanted))
    undefined = [n for n in names if not np.isfinite(values[n])]
    if undefined:
        reason = f"has no value for the descriptors {undefined}"
        hint = "leave those descriptors out, or the structure"
        if "packing_frac" in undefined:
            reason += f" ({_RADIUS_HINT})"
        raise InvalidStructureError(crystal.id, reason, hint)
    return {n: float(values[n]) for n in names}


_RADIUS_HINT = "packing_frac needs pymatgen's atomic radius of every element"


def elements_without_descriptors(
    crystals: Sequence[Crystal], names: str | Sequence[str] | None = None
) -> list[tuple[int, str]]:
    """``(position, message)`` of the crystals whose descriptors ``names`` cannot be computed, found
    from their elements alone (no element radius for ``packing_frac``), before any work starts."""
    names = resolve_names(names)
    if "packing_frac" not in names:
        return []
    from pymatgen.core.periodic_table import Element

    from .global_descriptors import _element_tables

    radii = _element_tables()[1]
    failures = []
    for position, crystal in enumerate(crystals):
        missing = sorted({int(z) for z in crystal.numbers if not np.isfinite(radii[int(z)])})
        if missing:
            symbols = ", ".join(Element.from_Z(z).symbol for z in missing)
            error = InvalidStructureError(
                crystal.id,
                f"has no value for the descriptors ['packing_frac'] ({_RADIUS_HINT}; {symbols} has none)",
                "leave packing_frac out (e.g. --names with the others), or the structure",
            )
            failures.append((position, str(error)))
    return failures


@dataclass
class DescriptorTable:
    """Descriptors of many crystals: ``values[k, j]`` is descriptor ``names[j]`` of crystal ``ids[k]``.

    ``failures`` lists ``(position, message)`` of the crystals left out; ``positions`` maps rows to
    the input order.
    """

    ids: list[str]
    names: list[str]
    values: np.ndarray
    positions: np.ndarray
    settings: DescriptorSettings
    failures: list[tuple[int, str]] = field(default_factory=list)

    def columns(self) -> tuple[np.ndarray, list[str]]:
        """The model input matrix and its column names (``crys_sys`` one-hot)."""
        return to_columns(self.values, self.names)

    def as_dict(self, index: int) -> dict[str, float]:
        return dict(zip(self.names, self.values[index].tolist(), strict=True))


def to_columns(values: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Turn descriptor values into model input columns (see :func:`descriptor_columns`)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    parts = []
    for j, name in enumerate(names):
        if name == "crys_sys":
            codes = values[:, j].astype(np.int64)
            parts.append(np.eye(len(CRYSTAL_SYSTEMS))[codes - 1])
        else:
            parts.append(values[:, j : j + 1])
    matrix = np.concatenate(parts, axis=1) if parts else np.zeros((len(values), 0))
    return matrix, descriptor_columns(list(names))


def _chunk(args) -> tuple[list[int], list[list[float]], list[tuple[int, str]]]:
    items, names, settings = args
    positions, rows, failures = [], [], []
    for position, crystal in items:
        try:
            values = crystal_descriptors(crystal, names, settings)
        except InvalidStructureError as error:
            failures.append((position, str(error)))
            continue
        positions.append(position)
        rows.append([values[n] for n in names])
    return positions, rows, failures


def compute_descriptors(
    crystals: Sequence[Crystal],
    names: str | Sequence[str] | None = None,
    settings: DescriptorSettings | None = None,
    workers: int | None = None,
) -> DescriptorTable:
    """Descriptors of many crystals, in parallel processes.

    Parameters
    ----------
    crystals
        Validated crystals.
    names
        ``"all"`` (the paper's 28, default), ``"local"``, ``"global"``, or names.
    workers
        Processes (default: the cores, at most 8); 1 computes in this process.
    """
    names = resolve_names(names)
    settings = settings or DescriptorSettings()
    crystals = list(crystals)
    # structures that fail for their elements alone are reported without computing anything
    known = elements_without_descriptors(crystals, names)
    excluded = {position for position, _ in known}
    items = [(k, c) for k, c in enumerate(crystals) if k not in excluded]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        results = [_chunk((c, names, settings)) for c in chunks]
    else:
        # fork: the workers run NumPy, SciPy's Qhull and spglib only
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_chunk, [(c, names, settings) for c in chunks]))
    positions = [p for r in results for p in r[0]]
    rows = [row for r in results for row in r[1]]
    failures = sorted(known + [f for r in results for f in r[2]])
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return DescriptorTable(
        ids=[crystals[p].id for p in positions],
        names=list(names),
        values=values,
        positions=np.array(positions, dtype=np.int64),
        settings=settings,
        failures=failures,
    )
