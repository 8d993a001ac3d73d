"""Datasets from tables of structures and values: JSON, JSON Lines, CSV (gzipped or not) and ASE databases.

One record per structure. The structure is found in the record by itself:

- a pymatgen ``Structure`` dict (``lattice`` and ``sites``, as ``Structure.as_dict()`` writes it, or its
  ``repr`` text, as the matcalc benchmark files store it);
- flat arrays: ``lattice`` (3×3, Å, rows) with ``species`` (symbols or atomic numbers) and
  ``frac_coords`` (or ``cart_coords``/``positions`` in Å), the layout of the phonondb table;
- CIF or POSCAR text, or the path of a structure file (relative to the table's folder);
- in an ASE database, the row's atoms.

Pass the record key that holds it with ``structure_key`` when a record has several candidates. Values
are read from the record's keys (in an ASE database, from ``key_value_pairs`` or the row's own
attributes, such as ``energy``).
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import math
import operator
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DatasetError, InvalidStructureError
from ..structures import Crystal, read_structure_file, to_crystal, validate_crystal
from .dataset import CrystalDataset, Skipped, _invalid_message

__all__ = ["TABLE_FORMATS", "Condition", "parse_condition", "read_table"]

#: format name -> the file endings it is recognised by
TABLE_FORMATS = {
    "jsonl": (".jsonl", ".jsonl.gz", ".ndjson"),
    "json": (".json", ".json.gz"),
    "csv": (".csv", ".csv.gz"),
    "ase-db": (".db",),
}
#: record keys tried, in order, for the structure id when none is given
ID_KEYS = ("id", "material_id", "mp_id", "jid", "task_id", "name")
_STRUCTURE_KEYS = ("structure", "cif", "poscar", "atoms", "file", "path")
_OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}


class Condition:
    """A record filter ``KEY OP VALUE`` (``min_freq_THz>=-0.5``); numbers compare as numbers."""

    def __init__(self, key: str, op: str, value: str):
        self.key, self.op, self.value = key, op, value

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def __call__(self, record: dict) -> bool:
        if self.key not in record:
            raise DatasetError(f"--where {self}: the records have no key {self.key!r}")
        left, right = record[self.key], self.value
        try:
            return bool(_OPERATORS[self.op](float(left), float(right)))
        except (TypeError, ValueError):
            return bool(_OPERATORS[self.op](str(left), right))


def parse_condition(text: str) -> Condition:
    """``"min_freq_THz>=-0.5"`` -> a :class:`Condition`."""
    match = re.fullmatch(r"\s*([^<>=!\s]+)\s*(>=|<=|!=|==|>|<)\s*(.+?)\s*", text)
    if not match:
        raise DatasetError(
            f"cannot read the condition {text!r}; write KEY OP VALUE, e.g. 'min_freq_THz>=-0.5'"
        )
    return Condition(*match.groups())


def table_format(path: Path) -> str:
    name = path.name.lower()
    for fmt, endings in TABLE_FORMATS.items():
        if name.endswith(endings):
            return fmt
    known = ", ".join(e for endings in TABLE_FORMATS.values() for e in endings)
    raise DatasetError(
        f"{str(path)!r}: unknown table format; name the format (--format) or use one of {known}"
    )


def _open(path: Path):
    return gzip.open(path, "rt", newline="") if path.name.endswith(".gz") else open(path, newline="")


def _records(path: Path, fmt: str) -> Iterator[dict]:
    if fmt == "ase-db":
        import ase.db

        with ase.db.connect(str(path)) as db:
            for row in db.select():
                record = {"id": row.id, **row.key_value_pairs, "atoms": row.toatoms()}
                for key in ("energy", "free_energy", "magmom", "charge", "unique_id", "formula"):
                    if key not in record and row.get(key) is not None:
                        record[key] = row.get(key)
                yield record
        return
    with _open(path) as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DatasetError(f"{str(path)!r} line {number} is not JSON: {error}") from error
        elif fmt == "json":
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{str(path)!r} is not JSON: {error}") from error
            if isinstance(data, dict):  # {id: record}
                data = [{"id": key, **value} for key, value in data.items()]
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise DatasetError(
                    f"{str(path)!r} must hold a list of records (objects), or an object of them"
                )
            yield from data
        else:
            yield from csv.DictReader(handle)


def _record_id(record: dict, id_key: str | None, index: int) -> str:
    if id_key is not None:
        if id_key not in record:
            raise DatasetError(f"record {index} has no id key {id_key!r}; its keys are {sorted(record)}")
        return str(record[id_key])
    for key in ID_KEYS:
        if record.get(key) not in (None, ""):
            return str(record[key])
    return str(index)


def _from_pymatgen_dict(sid: str, data: dict) -> Crystal:
    from pymatgen.core import Structure
    from pymatgen.core.periodic_table import Element

    # fast path for ordered structures: arrays straight from the dict, no Structure object
    sites = data.get("sites") or []
    if sites and all(
        len(s.get("species", ())) == 1 and float(s["species"][0].get("occu", 1)) == 1.0 for s in sites
    ):
        try:
            lattice = data["lattice"]["matrix"] if isinstance(data["lattice"], dict) else data["lattice"]
            numbers = np.array([Element(s["species"][0]["element"]).Z for s in sites], dtype=np.int64)
            frac = np.array([s["abc"] for s in sites], dtype=np.float64)
            return validate_crystal(Crystal(sid, np.asarray(lattice, dtype=np.float64), frac, numbers))
        except (KeyError, ValueError, TypeError):
            pass  # an unusual dict: let pymatgen read it
    try:
        structure = Structure.from_dict(data)
    except Exception as error:
        raise InvalidStructureError(sid, f"is not a readable pymatgen structure dict ({error})") from error
    return to_crystal(structure, sid)


def _from_arrays(sid: str, record: dict) -> Crystal:
    from pymatgen.core.periodic_table import Element

    coordinates = next((k for k in ("frac_coords", "cart_coords", "positions") if k in record), None)
    species = record.get("species", record.get("numbers"))
    if "lattice" not in record or species is None or coordinates is None:
        raise InvalidStructureError(
            sid,
            f"has a structure with the keys {sorted(record)}",
            "flat arrays need lattice, species (or numbers) and frac_coords (or cart_coords, positions)",
        )
    lattice = np.asarray(record["lattice"], dtype=np.float64)
    numbers = np.array([s if isinstance(s, (int, np.integer)) else Element(str(s)).Z for s in species])
    if "frac_coords" in record:
        frac = np.asarray(record["frac_coords"], dtype=np.float64)
    else:
        cart = np.asarray(record[coordinates], dtype=np.float64)
        frac = np.linalg.solve(lattice.T, cart.reshape(-1, 3).T).T
    return validate_crystal(
        Crystal(sid, lattice.reshape(3, 3), frac.reshape(-1, 3), numbers.astype(np.int64))
    )


def _from_text(sid: str, text: str, folder: Path) -> Crystal:
    import warnings

    stripped = text.strip()
    if stripped.startswith("{") and "lattice" in stripped:  # a pymatgen dict, as JSON or as Python repr
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = ast.literal_eval(stripped)
        return _from_pymatgen_dict(sid, data)
    if "\n" not in stripped:  # a file name
        path = Path(stripped) if Path(stripped).is_absolute() else folder / stripped
        return read_structure_file(path, sid)
    from pymatgen.core import Structure

    fmt: Literal["cif", "poscar"] = (
        "cif" if ("_cell_length_a" in stripped or stripped.startswith("data_")) else "poscar"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(stripped, fmt=fmt)
    except Exception as error:
        raise InvalidStructureError(
            sid, f"its {fmt.upper()} text is unreadable ({error})", "check it"
        ) from error
    return to_crystal(structure, sid)


def _crystal(sid: str, record: dict, structure_key: str | None, folder: Path) -> Crystal:
    if structure_key is None:
        if "lattice" in record and ("species" in record or "numbers" in record):
            return _from_arrays(sid, record)
        structure_key = next((k for k in _STRUCTURE_KEYS if record.get(k) not in (None, "")), None)
        if structure_key is None:
            raise InvalidStructureError(
                sid,
                f"has no structure: none of the keys {list(_STRUCTURE_KEYS)}, nor lattice + species",
                "name the key that holds it with --structure",
            )
    if structure_key not in record:
        raise InvalidStructureError(sid, f"has no key {structure_key!r}")
    value = record[structure_key]
    if isinstance(value, dict):
        if "sites" in value:
            return _from_pymatgen_dict(sid, value)
        return _from_arrays(sid, value)
    if isinstance(value, str):
        return _from_text(sid, value, folder)
    return to_crystal(value, sid)  # ASE Atoms from a database row, a pymatgen Structure


def _value(sid: str, record: dict, key: str, log10: bool) -> float:
    if key not in record:
        raise DatasetError(f"record {sid!r} has no target key {key!r}; its keys are {sorted(record)}")
    raw = record[key]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidStructureError(sid, f"has a target {key} that is not a number ({raw!r})") from None
    if not math.isfinite(value):
        raise InvalidStructureError(
            sid, f"has a missing or NaN target {key}", "fix the value or leave it out"
        )
    if log10:
        if value <= 0:
            raise InvalidStructureError(sid, f"has a non-positive {key} ({value:g}), which has no log10")
        value = math.log10(value)
    return value


def read_table(
    path: str | os.PathLike,
    targets: dict[str, str],
    target_names: Sequence[str] | None = None,
    id_key: str | None = None,
    structure_key: str | None = None,
    where: Sequence[Condition | str] = (),
    log10: bool = False,
    fmt: str = "auto",
    limit: int | None = None,
    skip_invalid: bool = False,
) -> tuple[CrystalDataset, list[Skipped]]:
    """A dataset from a table of structures and values.

    Parameters
    ----------
    targets
        Record key -> unit, in column order, e.g. ``{"U_kJmol": "kJ/mol"}``.
    target_names
        Names of the target columns (default: the record keys; ``log10_<key>`` with ``log10``).
    id_key
        The record key of the structure id (default: the first of ``id``, ``material_id``, ``mp_id``,
        ``jid``, ``task_id``, ``name`` present, else the record's position).
    structure_key
        The record key of the structure (default: found as the module docstring says).
    where
        Conditions every record must meet (``"min_freq_THz>=-0.5"``); the others are left out and
        counted in the dataset's ``metadata["filtered_out"]``, not reported as invalid.
    log10
        Learn log10 of the (positive) values, as the CGCNN paper does for elastic moduli.
    fmt
        ``jsonl``, ``json``, ``csv``, ``ase-db`` or ``auto`` (from the file name).
    limit
        Read only the first ``limit`` records.

    Raises
    ------
    DatasetError
        The table cannot be read, lacks a key, or (without ``skip_invalid``) has invalid structures
        or values: one message lists them all.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{str(path)!r} does not exist")
    if not targets:
        raise DatasetError("name at least one target: the record key that holds its value, and its unit")
    fmt = table_format(path) if fmt == "auto" else fmt
    if fmt not in TABLE_FORMATS:
        raise DatasetError(f"unknown table format {fmt!r}; use one of {list(TABLE_FORMATS)}")
    conditions = [parse_condition(c) if isinstance(c, str) else c for c in where]
    keys = list(targets)
    names = list(target_names) if target_names else [f"log10_{k}" if log10 else k for k in keys]
    if len(names) != len(keys):
        raise DatasetError(f"{len(keys)} targets but {len(names)} target names")
    units = [f"log10({u})" if log10 else u for u in targets.values()]
    crystals, values, skipped, seen, filtered = [], [], [], set(), 0
    for index, record in enumerate(_records(path, fmt)):
        if limit is not None and index >= limit:
            break
        if not all(condition(record) for condition in conditions):
            filtered += 1
            continue
        sid = _record_id(record, id_key, index)
        try:
            if sid in seen:
                raise InvalidStructureError(
                    sid, "duplicate id", "ids must be unique; name another key with --id"
                )
            seen.add(sid)
            row = [_value(sid, record, key, log10) for key in keys]
            crystals.append(_crystal(sid, record, structure_key, path.parent))
            values.append(row)
        except InvalidStructureError as error:
            skipped.append(Skipped(sid, str(error)))
    if skipped and not skip_invalid:
        raise DatasetError(_invalid_message(skipped))
    if not crystals:
        raise DatasetError(
            f"{str(path)!r}: no valid record"
            + (f" ({filtered} left out by the conditions)" if filtered else "")
        )
    metadata = {"source": str(path), "format": fmt, "filtered_out": filtered}
    if conditions:
        metadata["where"] = [str(c) for c in conditions]
    dataset = CrystalDataset.from_crystals(crystals, np.array(values), names, units, metadata=metadata)
    return dataset, skipped
