"""Calcfunctions of the active-learning loop and of the table reference.

The table reference reads phonon thermal properties from a table (phonondb's ``phonondb-300K.jsonl.gz``
or any JSON Lines file in its format) instead of computing them, so the loop can be benchmarked on real
DFT data; :func:`table_thermal_properties` does the reading, so the provenance graph shows the table
(path and sha256) and the row every value came from. The other calcfunctions grow the training dataset
from reference outputs and turn the rounds' validation errors into a learning curve.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import re
import threading
import typing as t
from collections import Counter
from functools import reduce
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ...phonons.settings import PhononSettings

__all__ = [
    "MATCH_DEFAULTS",
    "TARGETS",
    "VALIDATION_PREFIX",
    "PhononTable",
    "TableLookupError",
    "curve_row",
    "default_table_path",
    "extend_dataset",
    "learning_curve",
    "load_phonon_table",
    "pool_dataset",
    "prediction_set",
    "reference_targets",
    "table_thermal_properties",
    "validation_errors",
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


# --- the active-learning loop ------------------------------------------------------------------------

#: Thermal properties that can become training targets: the reference output's key and the unit.
TARGETS: dict[str, tuple[str, str]] = {
    "U": ("U_kJmol", "kJ/mol"),
    "Cv": ("Cv_JKmol", "J/(K mol)"),
    "S": ("S_JKmol", "J/(K mol)"),
    "F": ("F_kJmol", "kJ/mol"),
}


def _dataset_node(dataset: t.Any, skipped: dict[str, str] | None = None) -> t.Any:
    from ...data.dataset import CrystalDatasetData

    node = CrystalDatasetData.from_dataset(dataset)
    if skipped is not None:
        node.base.attributes.set("skipped", skipped)
    return node


@calcfunction
def pool_dataset(**structures: orm.StructureData) -> t.Any:
    """The pool as one dataset without targets (ids: the structures' UUIDs), for ``cgcnn.predict``.

    Structures no model can take are left out and listed, UUID -> reason, in the ``skipped`` attribute.
    """
    from ...training.dataset import CrystalDataset

    labels = sorted(structures)
    dataset, skipped = CrystalDataset.from_structures(
        [structures[label].get_ase() for label in labels],
        None,
        ids=[structures[label].uuid for label in labels],
        target_names=["none"],
        units=[""],
        skip_invalid=True,
        require_targets=False,
        metadata={"what": "active-learning pool"},
    )
    return _dataset_node(dataset, {s.id: s.reason for s in skipped})


#: Id prefix of the validation crystals in a round's prediction set (pool ids are UUIDs).
VALIDATION_PREFIX = "validation:"


@calcfunction
def prediction_set(pool: orm.Data, computed: orm.List, validation: orm.Data | None = None) -> t.Any:
    """What a round predicts, as one dataset for one ``cgcnn.predict`` job: the pool structures whose
    UUIDs are not in ``computed`` (ids: their UUIDs) and the ``validation`` crystals (ids prefixed
    with ``validation:``), without targets."""
    from ...structures import Crystal
    from ...training.dataset import CrystalDataset

    dataset = pool.get_dataset()
    done = set(computed.get_list())
    crystals = [c for c in dataset.crystals() if c.id not in done]
    if validation is not None:
        for crystal in validation.get_dataset().crystals():
            crystals.append(
                Crystal(
                    f"{VALIDATION_PREFIX}{crystal.id}", crystal.lattice, crystal.frac_coords, crystal.numbers
                )
            )
    if not crystals:
        raise ValueError("every structure of the pool is computed and there is no validation set")
    metadata = {"what": "active-learning round: pool remainder and validation set"}
    return _dataset_node(
        CrystalDataset.from_crystals(
            crystals, np.full((len(crystals), 1), np.nan), ["none"], [""], metadata=metadata
        )
    )


def _value_at(record: dict[str, t.Any], key: str, temperature: float) -> float:
    """``record[key]`` at ``temperature`` (a reference's lists over ``temperatures_K``)."""
    temperatures = [float(x) for x in record["temperatures_K"]]
    found = [k for k, x in enumerate(temperatures) if abs(x - temperature) < 1e-6]
    if not found:
        raise ValueError(f"no value at {temperature:g} K among {temperatures} K")
    value = record[key][found[0]]
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"{key} at {temperature:g} K is {value}")
    return float(value)


def reference_targets(record: dict[str, t.Any], targets: t.Sequence[str], temperature: float) -> list[float]:
    """The training targets (``U``, ``Cv``, ...) of one reference's ``thermal_properties``."""
    return [_value_at(record, TARGETS[name][0], temperature) for name in targets]


@calcfunction
def extend_dataset(settings: orm.Dict, dataset: orm.Data | None = None, **references: t.Any) -> t.Any:
    """A new training dataset: ``dataset`` (if given) and one crystal per reference.

    ``references`` has two namespaces with the same labels: ``primitive_structures`` (the references'
    primitive cells, the cells their values are per mole of) and ``thermal_properties`` (their
    ``thermal_properties`` Dicts). ``settings``: ``targets`` (``U``, ``Cv``, ``S``, ``F``) and
    ``temperature`` (K). The new crystals' ids are the primitive cells' UUIDs, so
    ``get_source_structures`` finds them; the earlier crystals keep their ids and values.
    """
    from ...training.dataset import CrystalDataset

    options = settings.get_dict()
    names, temperature = list(options["targets"]), float(options["temperature"])
    structures = dict(references.get("primitive_structures", {}))
    records = dict(references.get("thermal_properties", {}))
    if set(structures) != set(records) or not structures:
        raise ValueError(
            f"primitive_structures {sorted(structures)} and thermal_properties {sorted(records)} "
            "must have the same, non-empty labels"
        )
    labels = sorted(structures)
    values = np.array([reference_targets(records[label].get_dict(), names, temperature) for label in labels])
    units = [TARGETS[name][1] for name in names]
    metadata = {"per": "mole of primitive cells", "temperature_K": temperature, "targets": names}
    new, _ = CrystalDataset.from_structures(
        [structures[label].get_ase() for label in labels],
        values,
        ids=[structures[label].uuid for label in labels],
        target_names=names,
        units=units,
        metadata=metadata,
    )
    if dataset is None:
        return _dataset_node(new)
    old = dataset.get_dataset()
    if list(old.target_names) != names or list(old.units) != units:
        raise ValueError(
            f"dataset {dataset.uuid} has targets {old.target_names} in {old.units}, the references give "
            f"{names} in {units}"
        )
    crystals = [*old.crystals(), *new.crystals()]
    merged = CrystalDataset.from_crystals(
        crystals, np.vstack([old.targets, new.targets]), names, units, metadata={**old.metadata, **metadata}
    )
    return _dataset_node(merged)


def _errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    mae = float(np.mean(np.abs(predicted - reference)))
    mad = float(np.mean(np.abs(reference - reference.mean())))
    return {"mae": mae, "mad": mad, "mae_over_mad": mae / mad if mad > 0 else None}


@calcfunction
def validation_errors(predictions: orm.ArrayData, validation: orm.Data, settings: orm.Dict) -> orm.Dict:
    """The ensemble's errors on the validation set: per target (``settings['targets']``) the MAE, the
    MAD of the references and MAE/MAD, per cell (the dataset's basis, mole of primitive cells) and per
    atom (values and references divided by the atoms of each cell); ``n`` validation crystals
    predicted, ``n_skipped`` not. ``predictions`` may hold other structures: the validation crystals
    are those whose id is ``settings['id_prefix']`` (default none) and a validation id."""
    names, prefix = list(settings["targets"]), str(settings.get("id_prefix", ""))
    dataset = validation.get_dataset()
    row_of = {f"{prefix}{sid}": k for k, sid in enumerate(dataset.ids)}
    every = [str(i) for i in predictions.get_array("ids")]
    where = [k for k, i in enumerate(every) if i in row_of]
    ids = [every[k] for k in where]
    rows = np.array([row_of[i] for i in ids], dtype=int)
    values = np.asarray(predictions.get_array("values"), dtype=float).reshape(len(every), -1)[where]
    atoms = dataset.num_atoms[rows].astype(float)
    result: dict[str, t.Any] = {"n": len(ids), "n_skipped": len(dataset) - len(ids), "targets": names}
    for k, name in enumerate(names):
        column = list(dataset.target_names).index(name)
        reference, predicted = dataset.targets[rows, column], values[:, k]
        result[name] = {
            **_errors(predicted, reference),
            "unit": dataset.units[column],
            "per_atom": _errors(predicted / atoms, reference / atoms),
        }
    return orm.Dict(result)


#: Columns of the learning curve besides the per-target errors.
CURVE_COLUMNS = ("round", "n_references", "n_added", "n_failed", "n_unstable", "n_training", "members")


def curve_columns(targets: t.Sequence[str]) -> list[str]:
    columns = list(CURVE_COLUMNS)
    for name in targets:
        columns += [
            f"{name}_mae",
            f"{name}_mae_over_mad",
            f"{name}_mae_per_atom",
            f"{name}_mae_over_mad_per_atom",
        ]
    return columns


def curve_row(
    counts: dict[str, int], errors: dict[str, t.Any] | None, targets: t.Sequence[str]
) -> dict[str, t.Any]:
    """One learning-curve row: the counts and, with a validation set, each target's errors."""
    row: dict[str, t.Any] = {key: counts.get(key) for key in CURVE_COLUMNS}
    for name in targets:
        values = (errors or {}).get(name) or {}
        per_atom = values.get("per_atom") or {}
        row[f"{name}_mae"] = values.get("mae")
        row[f"{name}_mae_over_mad"] = values.get("mae_over_mad")
        row[f"{name}_mae_per_atom"] = per_atom.get("mae")
        row[f"{name}_mae_over_mad_per_atom"] = per_atom.get("mae_over_mad")
    return row


def learning_curve_png(
    rows: list[dict[str, t.Any]], targets: t.Sequence[str], goals: dict[str, t.Any]
) -> bytes:
    """MAE/MAD per cell and per atom of each target against the number of reference calculations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    x = [row["n_references"] for row in rows]
    for axis, suffix, title in ((axes[0], "", "per cell"), (axes[1], "_per_atom", "per atom")):
        plotted = False
        for name in targets:
            y = [row.get(f"{name}_mae_over_mad{suffix}") for row in rows]
            if any(v is not None for v in y):
                axis.plot(x, [np.nan if v is None else v for v in y], "o-", label=name)
                plotted = True
        goal = goals.get("per_atom" if suffix else "per_cell")
        if goal is not None:
            axis.axhline(goal, color="grey", ls="--", lw=1, label=f"target {goal:g}")
        if plotted:
            axis.set_yscale("log")
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no validation set", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(f"validation MAE/MAD {title}")
        axis.set_xlabel("reference calculations")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


class CurveOutputs(t.TypedDict):
    table: orm.SinglefileData
    plot: orm.SinglefileData
    summary: orm.Dict


@calcfunction
def learning_curve(record: orm.Dict, **errors: orm.Dict) -> CurveOutputs:
    """The learning curve of an active-learning run: ``table`` (CSV, one row per trained ensemble:
    round 0 is the initial one), ``plot`` (PNG) and ``summary`` (``record`` as given: the rows, the
    structures computed per round, failures, why the loop stopped). ``errors``: the rounds'
    validation errors (``validation_errors`` outputs), linked for provenance."""
    content = record.get_dict()
    targets, rows = list(content["targets"]), list(content["rows"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=curve_columns(targets), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    table = orm.SinglefileData(io.BytesIO(buffer.getvalue().encode()), filename="learning_curve.csv")
    png = learning_curve_png(rows, targets, content.get("goals", {}))
    return {
        "table": table,
        "plot": orm.SinglefileData(io.BytesIO(png), filename="learning_curve.png"),
        "summary": orm.Dict(content),
    }
