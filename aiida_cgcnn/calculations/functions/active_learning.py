"""Calcfunctions of the active-learning loop and of the table reference.

The table reference reads phonon thermal properties from a table (phonondb's ``phonondb-300K.jsonl.gz``
or any JSON Lines file in its format) instead of computing them, so the loop can be benchmarked on real
DFT data; :func:`table_thermal_properties` does the reading, so the provenance graph shows the table
(path and sha256) and the row every value came from. The other calcfunctions grow the training dataset
from reference outputs and turn the rounds' validation errors into a learning curve.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import re
import threading
import typing as t
from collections import Counter
from functools import reduce
from pathlib import Path

from aiida import orm
from aiida.engine import calcfunction

from ...phonons.settings import PhononSettings

__all__ = [
    "PhononTable",
    "TableLookupError",
    "default_table_path",
    "load_phonon_table",
    "table_thermal_properties",
]

#: The thermal properties a table row gives, by key (phonondb's keys and units, per mole of cells).
TABLE_PROPERTIES = ("U_kJmol", "Cv_JKmol", "S_JKmol", "F_kJmol")
#: Keys of ``cgcnn.phonon_reference``'s ``thermal_properties`` that a table does not hold (set to None).
NOT_TABULATED = ("zero_point_energy_kJmol", "n_imaginary_modes", "mesh", "n_qpoints")
#: Structure-matching tolerances (pymatgen's ``StructureMatcher``), tighter than pymatgen's defaults
#: (lattice lengths within 5 % instead of 20 %, no volume scaling): a crystal strained further is
#: another crystal, not the tabulated one, while another functional's relaxation (1-2 %) still matches.
MATCH_DEFAULTS: dict[str, t.Any] = {"ltol": 0.05, "stol": 0.1, "angle_tol": 2.0, "scale": False}


class TableLookupError(ValueError):
    """A structure or temperature a table does not hold; the message says which and what to do."""


def default_table_path() -> str:
    """phonondb's 300 K table in the shared data folder (``$AIIDA_CGCNN_DATA`` or ``../shared/data``),
    or the path it would have there when the data is absent."""
    from ...training.public_data import shared_data_dir

    root = shared_data_dir()
    if root is None:
        return str(
            Path(os.environ.get("AIIDA_CGCNN_DATA", "../shared/data")) / "phonondb/phonondb-300K.jsonl.gz"
        )
    return str(root / "phonondb" / "phonondb-300K.jsonl.gz")


def formula_key(symbols: t.Sequence[str]) -> str:
    """The reduced formula as a sorted key (``Ba1Te1``): equal for a cell and any supercell of it."""
    counts = Counter(symbols)
    divisor = reduce(math.gcd, counts.values())
    return "".join(f"{element}{counts[element] // divisor}" for element in sorted(counts))


@dataclasses.dataclass(frozen=True)
class TableMatch:
    """The row a structure was found at: its index, id, and the matcher's RMS distance (normalised
    by pymatgen by the volume per atom); ``also`` lists other rows that matched."""

    index: int
    id: str
    rms: float
    how: str
    also: tuple[str, ...] = ()


class PhononTable:
    """The rows of a phonon table (JSON Lines, optionally gzipped), indexed by reduced formula and id.

    A row holds the primitive cell (``lattice`` rows in Å, ``species``, ``frac_coords``) and, per mole
    of that cell, ``U_kJmol``, ``Cv_JKmol``, ``S_JKmol``, ``F_kJmol`` and ``min_freq_THz``: scalars at
    the temperature ``T`` (phonondb: 300 K), or lists over ``temperatures_K``. Rows are named by
    ``mp_id`` (else ``name``, else their line number).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TableLookupError(
                f"the table {str(self.path)!r} does not exist; give `table` (a JSON Lines file in "
                "phonondb's format: lattice, species, frac_coords, U_kJmol, Cv_JKmol, ... at T)"
            )
        content = self.path.read_bytes()
        self.sha256 = hashlib.sha256(content).hexdigest()
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
        self.rows: list[dict[str, t.Any]] = []
        for number, line in enumerate(content.decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = [
                    k for k in ("lattice", "species", "frac_coords", *TABLE_PROPERTIES[:2]) if k not in row
                ]
            except (json.JSONDecodeError, TypeError) as error:
                raise TableLookupError(f"{self.path}, line {number}: not a JSON object ({error})") from None
            if missing:
                raise TableLookupError(f"{self.path}, line {number}: the row lacks {missing}")
            self.rows.append(row)
        self.ids = [str(r.get("mp_id") or r.get("name") or f"row{k}") for k, r in enumerate(self.rows)]
        self.by_id = {row_id: k for k, row_id in enumerate(self.ids)}
        for k, row in enumerate(self.rows):
            if row.get("name"):
                self.by_id.setdefault(str(row["name"]), k)
        self.by_formula: dict[str, list[int]] = {}
        for k, row in enumerate(self.rows):
            self.by_formula.setdefault(formula_key(row["species"]), []).append(k)

    def structure(self, index: int) -> t.Any:
        """Row ``index``'s primitive cell as a pymatgen ``Structure``."""
        from pymatgen.core import Lattice, Structure

        row = self.rows[index]
        return Structure(Lattice(row["lattice"]), row["species"], row["frac_coords"])

    def temperatures(self, index: int) -> list[float]:
        row = self.rows[index]
        if "temperatures_K" in row:
            return [float(x) for x in row["temperatures_K"]]
        return [float(row.get("T", 300.0))]

    def _hint(self, label: str) -> int | None:
        """The row a node label names: an mp id (``mp-149``, or ``mp_149`` as a link label), a row's
        ``name``, or a label that starts with one of them (``mp-149_strained``)."""
        for candidate in (label, label.replace("_", "-")):
            if candidate in self.by_id:
                return self.by_id[candidate]
        found = re.match(r"mp[-_](\d+)", label)
        return self.by_id.get(f"mp-{found[1]}") if found else None

    def find(self, structure: t.Any, label: str = "", match: dict[str, t.Any] | None = None) -> TableMatch:
        """The row holding ``structure`` (pymatgen), by the label's hint first, else among the rows of
        the same reduced formula; of several matches the closest. Raises :class:`TableLookupError`."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        settings = {**MATCH_DEFAULTS, **(match or {})}
        matcher = StructureMatcher(primitive_cell=True, attempt_supercell=False, **settings)
        symbols = [site.specie.symbol for site in structure]
        key = formula_key(symbols)
        name = label or structure.composition.reduced_formula
        hint = self._hint(label) if label else None
        if hint is not None and formula_key(self.rows[hint]["species"]) == key:
            rms = matcher.get_rms_dist(structure, self.structure(hint))
            if rms is not None:
                return TableMatch(hint, self.ids[hint], float(rms[0]), f"label {label!r}")
        candidates = self.by_formula.get(key, [])
        if not candidates:
            raise TableLookupError(
                f"structure {name!r} ({structure.composition.reduced_formula}) is not in the table "
                f"{self.path.name}: no row has its reduced formula; use a reference that computes it "
                "(cgcnn.phonon_reference) or a table that holds it"
            )
        matches = []
        for index in candidates:
            rms = matcher.get_rms_dist(structure, self.structure(index))
            if rms is not None:
                matches.append((float(rms[0]), index))
        if not matches:
            tried = ", ".join(self.ids[k] for k in candidates[:10]) + (" ..." if len(candidates) > 10 else "")
            raise TableLookupError(
                f"structure {name!r} ({structure.composition.reduced_formula}) is not in the table "
                f"{self.path.name}: none of the {len(candidates)} row(s) of that formula ({tried}) matches "
                f"it within the tolerances {settings}; check its cell and volume, or loosen `match`"
            )
        matches.sort()
        rms, index = matches[0]
        how = f"structure match among {len(candidates)} row(s) of {structure.composition.reduced_formula}"
        return TableMatch(index, self.ids[index], rms, how, tuple(self.ids[k] for _, k in matches[1:]))

    def thermal_properties(
        self, index: int, temperatures: t.Sequence[float], stability_threshold_thz: float
    ) -> dict[str, t.Any]:
        """Row ``index`` at ``temperatures`` with the keys of ``cgcnn.phonon_reference``'s output;
        raises :class:`TableLookupError` for a temperature the row does not tabulate."""
        row, tabulated = self.rows[index], self.temperatures(index)
        columns = []
        for temperature in temperatures:
            found = [k for k, x in enumerate(tabulated) if abs(x - float(temperature)) < 1e-6]
            if not found:
                raise TableLookupError(
                    f"{self.ids[index]}: {float(temperature):g} K is not tabulated in {self.path.name}, "
                    f"which gives {', '.join(f'{x:g}' for x in tabulated)} K only; ask for those "
                    "temperatures or use a reference that computes (cgcnn.phonon_reference)"
                )
            columns.append(found[0])

        def at(key: str) -> list[float | None]:
            value = row.get(key)
            if value is None:
                return [None] * len(columns)
            values = value if isinstance(value, list) else [value]
            return [float(values[k]) for k in columns]

        min_freq = row.get("min_freq_THz")
        species = row["species"]
        return {
            "temperatures_K": [float(x) for x in temperatures],
            **{key: at(key) for key in TABLE_PROPERTIES},
            "min_freq_THz": None if min_freq is None else float(min_freq),
            "stability_threshold_THz": stability_threshold_thz,
            "stable": None if min_freq is None else bool(float(min_freq) >= stability_threshold_thz),
            "natoms": len(species),
            "formula": "".join(f"{e}{n}" if n > 1 else e for e, n in sorted(Counter(species).items())),
            "nac": row.get("has_born"),
            **{key: None for key in NOT_TABULATED},
            "per": "mole of primitive cells",
        }


_TABLES: dict[tuple[str, int, int], PhononTable] = {}
_LOCK = threading.Lock()


def load_phonon_table(path: str | os.PathLike[str]) -> PhononTable:
    """The table at ``path``, read once per process (kept while the file is unchanged)."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return PhononTable(resolved)  # raises the clear message
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key not in _TABLES:
            _TABLES[key] = PhononTable(resolved)
        return _TABLES[key]


class TableOutputs(t.TypedDict):
    thermal_properties: orm.Dict
    primitive_structure: orm.StructureData


@calcfunction
def table_thermal_properties(
    structure: orm.StructureData, table: orm.Str, temperatures: orm.List, settings: orm.Dict
) -> TableOutputs:
    """U, Cv, S, F (per mole of primitive cells) of ``structure`` at ``temperatures``, read from the row
    of ``table`` that holds it (:meth:`PhononTable.find`: the label as an mp-id hint, else structure
    matching among the rows of its reduced formula).

    The keys are those of ``cgcnn.phonon_reference``'s ``thermal_properties`` (the ones a table lacks,
    e.g. ``n_qpoints``, are None), plus ``source``: the table's path and sha256, the row's id and
    name, how the structure was matched and the RMS distance. ``settings``: ``match``
    (StructureMatcher tolerances) and ``stability_threshold_THz``. ``primitive_structure`` is the
    table's cell, the cell the values are per mole of. Raises :class:`TableLookupError`.
    """
    options = settings.get_dict()
    source = load_phonon_table(table.value)
    found = source.find(structure.get_pymatgen_structure(), structure.label, options.get("match"))
    threshold = float(options.get("stability_threshold_THz", PhononSettings().stability_threshold_thz))
    record = source.thermal_properties(found.index, temperatures.get_list(), threshold)
    record["source"] = {
        "table": str(source.path),
        "sha256": source.sha256,
        "id": found.id,
        "name": source.rows[found.index].get("name"),
        "row": found.index,
        "match": found.how,
        "rms": found.rms,
        "also_matched": list(found.also),
    }
    primitive = orm.StructureData(pymatgen=source.structure(found.index))
    primitive.label = structure.label
    return {"thermal_properties": orm.Dict(record), "primitive_structure": primitive}
