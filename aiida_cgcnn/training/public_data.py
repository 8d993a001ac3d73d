"""Readers for public materials datasets in the formats they are distributed in.

Each returns a validated :class:`CrystalDataset` (with units) and the structures left out.
Structures are built from arrays directly (no pymatgen ``Structure`` per record) where the format
allows, which keeps 10^4-structure sets fast to read.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from ..structures import Crystal
from .dataset import CrystalDataset, Skipped

__all__ = [
    "PHONONDB_COLUMNS",
    "phonondb_crystal",
    "read_castelli_perovskites",
    "read_matcalc_structures",
    "read_phonondb_thermal",
    "shared_data_dir",
]


def shared_data_dir() -> Path | None:
    """The project's real-data folder (``$AIIDA_CGCNN_DATA`` or ``../shared/data``), if present."""
    candidates = [os.environ.get("AIIDA_CGCNN_DATA")]
    root = Path(__file__).resolve().parents[2]
    candidates += [str(root.parent / "shared" / "data"), str(root / ".." / "shared" / "data")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def _crystal_from_pymatgen_dict(sid: str, data: dict) -> Crystal:
    from pymatgen.core.periodic_table import Element

    lattice = np.array(data["lattice"]["matrix"], dtype=np.float64)
    sites = data["sites"]
    numbers = []
    for site in sites:
        species = site["species"]
        if len(species) != 1 or float(species[0].get("occu", 1)) != 1.0:
            from ..errors import InvalidStructureError

            raise InvalidStructureError(sid, "has partial occupancy or disordered sites")
        numbers.append(Element(species[0]["element"]).Z)
    frac = np.array([site["abc"] for site in sites], dtype=np.float64)
    return Crystal(sid, lattice, frac, np.array(numbers, dtype=np.int64))


def read_matcalc_structures(
    path: str | os.PathLike,
    targets: dict[str, str],
    id_key: str,
    transform: str | None = None,
    skip_invalid: bool = True,
    limit: int | None = None,
) -> tuple[CrystalDataset, list[Skipped]]:
    """Read a gzipped JSON list of records with a pymatgen ``structure`` dict (matcalc benchmark data).

    Parameters
    ----------
    targets
        Record key -> unit, in order.
    transform
        ``"log10"`` to learn log10 of positive targets (the CGCNN paper's elastic moduli); records
        with non-positive values are left out.
    """
    with gzip.open(path, "rt") as handle:
        records = json.load(handle)
    if limit is not None:
        records = records[:limit]
    crystals, values, skipped = [], [], []
    from ..errors import InvalidStructureError
    from ..structures import validate_crystal

    for record in records:
        sid = str(record[id_key])
        try:
            row = [float(record[key]) for key in targets]
            if transform == "log10":
                if min(row) <= 0:
                    raise InvalidStructureError(sid, "has a non-positive target, which has no log10")
                row = [math.log10(v) for v in row]
            crystals.append(validate_crystal(_crystal_from_pymatgen_dict(sid, record["structure"])))
            values.append(row)
        except InvalidStructureError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(sid, str(error)))
    names = [f"log10_{k}" if transform == "log10" else k for k in targets]
    units = [f"log10({u})" if transform == "log10" else u for u in targets.values()]
    dataset = CrystalDataset.from_crystals(
        crystals, np.array(values), names, units, metadata={"source": str(path)}
    )
    return dataset, skipped


def read_castelli_perovskites(
    path: str | os.PathLike, target: str = "heat_all", unit: str = "eV/cell", limit: int | None = None
) -> tuple[CrystalDataset, list[Skipped]]:
    """Read the Castelli perovskite CSV (CIF text per row, heats of formation in eV per cell)."""
    from .dataset import CrystalDataset as _Dataset

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if limit is not None:
        rows = rows[:limit]
    from pymatgen.io.cif import CifParser

    structures, ids, values = [], [], []
    import warnings

    for row in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = CifParser(io.StringIO(row["cif"])).parse_structures(primitive=False)[0]
        structures.append(structure)
        ids.append(f"perovskite-{row['material_id']}")
        values.append(float(row[target]))
    return _Dataset.from_structures(
        structures,
        np.array(values),
        ids=ids,
        target_names=[target],
        units=[unit],
        skip_invalid=True,
        metadata={"source": str(path)},
    )


def phonondb_crystal(record: dict) -> Crystal:
    """The primitive cell of one phonondb table record (``mp_id``, ``lattice``, ``frac_coords``,
    ``species``), not yet validated."""
    from pymatgen.core.periodic_table import Element

    return Crystal(
        record["mp_id"],
        np.array(record["lattice"], dtype=np.float64),
        np.array(record["frac_coords"], dtype=np.float64),
        np.array([Element(s).Z for s in record["species"]], dtype=np.int64),
    )


#: phonondb's 300 K columns: target name -> (record key, unit), all per mole of primitive cells
PHONONDB_COLUMNS = {
    "U": ("U_kJmol", "kJ/mol"),
    "Cv": ("Cv_JKmol", "J/(K mol)"),
    "S": ("S_JKmol", "J/(K mol)"),
    "F": ("F_kJmol", "kJ/mol"),
}


def read_phonondb_thermal(
    path: str | os.PathLike,
    min_freq_thz: float = -0.5,
    limit: int | None = None,
    targets: tuple[str, ...] = ("U", "Cv"),
) -> tuple[CrystalDataset, list[Skipped]]:
    """Read phonondb's 300 K table: primitive cells with ``targets`` among U (kJ/mol), Cv, S
    (J/(K·mol)) and F (kJ/mol), per mole of primitive cells; dynamically unstable materials (lowest
    frequency below ``min_freq_thz``) are left out."""

    from ..errors import InvalidStructureError
    from ..structures import validate_crystal

    crystals, values, skipped = [], [], []
    with gzip.open(path, "rt") as handle:
        for k, line in enumerate(handle):
            if limit is not None and k >= limit:
                break
            record = json.loads(line)
            sid = record["mp_id"]
            if record["min_freq_THz"] < min_freq_thz:
                skipped.append(Skipped(sid, f"unstable: lowest frequency {record['min_freq_THz']:.2f} THz"))
                continue
            try:
                crystals.append(validate_crystal(phonondb_crystal(record)))
                values.append([record[PHONONDB_COLUMNS[t][0]] for t in targets])
            except InvalidStructureError as error:
                skipped.append(Skipped(sid, str(error)))
    dataset = CrystalDataset.from_crystals(
        crystals,
        np.array(values).reshape(len(crystals), len(targets)),
        list(targets),
        [PHONONDB_COLUMNS[t][1] for t in targets],
        metadata={"source": str(path), "temperature_K": 300.0, "per": "mole of primitive cells"},
    )
    return dataset, skipped
