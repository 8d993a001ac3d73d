"""Ensembles: several models of the same targets, the mean as prediction and the spread as uncertainty.

An :class:`Ensemble` also knows its domain (the elements and cell sizes its members were trained on)
and the basis of each extensive target: a target per *primitive cell* is predicted for the primitive
cell of whatever cell is given (a conventional cell or a supercell is reduced first), and reported
per basis cell, per atom and per formula unit. Structures outside the domain are predicted, flagged
and warned about, never silently.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidStructureError
from .predict import Predictor, graph_chunks, named_crystals
from .structures import Crystal
from .training.checkpoint import load_checkpoint
from .training.dataset import CrystalDataset, Skipped

__all__ = [
    "Ensemble",
    "EnsemblePrediction",
    "OutOfDomainWarning",
    "parse_ensemble_csv",
    "primitive_crystal",
    "read_ensemble_csv",
]

PRIMITIVE_SYMPREC = 1e-3  # Å; tolerant of cells written with few digits
SIZE_FACTOR = 2.0  # a (primitive) cell more than this factor outside the training sizes is out of domain


class OutOfDomainWarning(UserWarning):
    """A structure lies outside what the model was trained on (unseen elements, cell size)."""


def primitive_crystal(crystal: Crystal, symprec: float = PRIMITIVE_SYMPREC) -> Crystal:
    """The primitive cell of ``crystal`` found by spglib (positions not idealised), or ``crystal``
    itself when it is primitive or spglib finds no symmetry."""
    import spglib

    cell = (crystal.lattice.tolist(), crystal.frac_coords.tolist(), crystal.numbers.tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.x: about its error handling
        found = spglib.standardize_cell(cell, to_primitive=True, no_idealize=True, symprec=symprec)
    if found is None or len(found[2]) >= crystal.num_atoms or crystal.num_atoms % len(found[2]):
        return crystal
    lattice, frac, numbers = found
    return Crystal(
        crystal.id, np.asarray(lattice), np.asarray(frac) % 1.0, np.asarray(numbers, dtype=np.int64)
    )


def formula_units(numbers: np.ndarray) -> int:
    """Formula units in a cell: the greatest common divisor of its element counts."""
    _, counts = np.unique(numbers, return_counts=True)
    return int(np.gcd.reduce(counts))


@dataclass
class EnsemblePrediction:
    """Mean and spread of an ensemble's members, in input order (invalid structures in ``skipped``).

    ``mean`` and ``std`` are per basis for extensive targets (``basis[t]``: ``primitive cell`` or
    ``formula unit``) and as trained for intensive ones; ``std`` is the calibrated spread unless asked
    otherwise. ``cell_atoms`` are the atoms of the cell given, ``basis_atoms`` those of the cell the
    values refer to, ``out_of_domain`` a reason per structure (empty when inside the domain).
    """

    ids: list[str]
    mean: np.ndarray  # (N, T)
    std: np.ndarray  # (N, T)
    members: np.ndarray  # (M, N, T)
    target_names: list[str]
    units: list[str]
    basis: list[str]
    cell_atoms: np.ndarray
    basis_atoms: np.ndarray
    formula_units: np.ndarray
    formulas: list[str]
    out_of_domain: list[str]
    model: str = ""
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def extensive(self) -> list[bool]:
        return [b != "intensive" for b in self.basis]

    def per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per atom (extensive targets; NaN for intensive ones)."""
        per_fu_atoms = self.basis_atoms / self.formula_units
        return self._divided({"primitive cell": self.basis_atoms, "formula unit": per_fu_atoms})

    def per_formula_unit(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per formula unit (extensive targets; NaN for intensive ones)."""
        return self._divided({"primitive cell": self.formula_units, "formula unit": np.ones(len(self.ids))})

    def _divided(self, divisors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        nan = np.full(len(self.ids), np.nan)
        scale = np.stack([1.0 / divisors[b] if b in divisors else nan for b in self.basis], axis=1)
        scale = scale.reshape(len(self.ids), len(self.basis))
        return self.mean * scale, self.std * scale

    def for_cells(self, num_atoms: np.ndarray) -> EnsemblePrediction:
        """The same prediction for cells of ``num_atoms`` atoms (each a multiple of its basis cell):
        values per primitive cell scaled by ``num_atoms / basis_atoms``, e.g. to compare with data
        whose cells a looser tolerance finds reducible."""
        factor = np.asarray(num_atoms, dtype=np.float64) / self.basis_atoms
        scale = np.where([b == "primitive cell" for b in self.basis], factor[:, None], 1.0)
        return dataclasses.replace(
            self,
            mean=self.mean * scale,
            std=self.std * scale,
            members=self.members * scale[None],
            basis_atoms=np.where(
                any(b == "primitive cell" for b in self.basis), np.asarray(num_atoms), self.basis_atoms
            ),
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per structure with every column of :meth:`write_csv`."""
        per_atom, per_atom_std = self.per_atom()
        per_fu, _ = self.per_formula_unit()
        rows = []
        for k, sid in enumerate(self.ids):
            row: dict[str, Any] = {
                "id": sid,
                "formula": self.formulas[k],
                "cell_atoms": int(self.cell_atoms[k]),
                "basis_atoms": int(self.basis_atoms[k]),
            }
            for t, name in enumerate(self.target_names):
                row[f"{name}_pred"] = float(self.mean[k, t])
                row[f"{name}_std"] = float(self.std[k, t])
                if self.extensive[t]:
                    row[f"{name}_per_atom"] = float(per_atom[k, t])
                    row[f"{name}_per_atom_std"] = float(per_atom_std[k, t])
                    row[f"{name}_per_formula_unit"] = float(per_fu[k, t])
            row["out_of_domain"] = self.out_of_domain[k]
            rows.append(row)
        return rows

    def columns(self) -> list[tuple[str, str]]:
        """(column, unit) of every column, in CSV order."""
        out = [("id", ""), ("formula", ""), ("cell_atoms", ""), ("basis_atoms", "")]
        for t, (name, unit) in enumerate(zip(self.target_names, self.units, strict=True)):
            basis = self.basis[t]
            per_cell = f"{unit} (per {basis})" if self.extensive[t] else unit
            out += [(f"{name}_pred", per_cell), (f"{name}_std", per_cell)]
            if self.extensive[t]:
                out += [
                    (f"{name}_per_atom", f"{unit} (per atom)"),
                    (f"{name}_per_atom_std", f"{unit} (per atom)"),
                ]
                out += [(f"{name}_per_formula_unit", f"{unit} (per formula unit)")]
        return [*out, ("out_of_domain", "")]

    def write_csv(self, path: str | os.PathLike) -> None:
        """Predictions CSV: a header of column names, then a ``# units`` comment row, then one row per
        structure (input order). ``out_of_domain`` is empty or says why the structure is outside."""
        columns = self.columns()
        with open(path, "w", newline="") as handle:
            if self.model:
                handle.write(f"# model: {self.model}\n")
            writer = csv.writer(handle)
            writer.writerow([c for c, _ in columns])
            writer.writerow(["# units", *[u for _, u in columns[1:]]])
            for row in self.rows():
                writer.writerow([_format(row[c]) for c, _ in columns])


def read_ensemble_csv(path: str | os.PathLike) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """Read what :meth:`EnsemblePrediction.write_csv` wrote: the model label, the unit of every
    column, and one dict per structure (numbers as floats, ``out_of_domain`` as text)."""
    with open(path, newline="") as handle:
        return parse_ensemble_csv(handle.read(), source=str(path))


def parse_ensemble_csv(
    text: str, source: str = "the text"
) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """:func:`read_ensemble_csv` of a CSV's text; ``source`` names it in the error."""
    lines = text.splitlines()
    model = ""
    if lines and lines[0].startswith("# model: "):
        model, lines = lines[0][len("# model: ") :], lines[1:]
    reader = list(csv.reader(lines))
    if len(reader) < 2 or reader[1][:1] != ["# units"]:
        raise ValueError(f"{source!r} is not an ensemble predictions CSV (no '# units' row)")
    header, units = reader[0], ["", *reader[1][1:]]
    text_columns = {"id", "formula", "out_of_domain"}
    rows = [
        {
            c: (v if c in text_columns else int(v) if c.endswith("_atoms") else float(v))
            for c, v in zip(header, r, strict=True)
        }
        for r in reader[2:]
    ]
    return model, dict(zip(header, units, strict=True)), rows


def _format(value: Any) -> Any:
    return f"{value:.8g}" if isinstance(value, float) else value


class Ensemble:
    """Members of one recipe: predict with all, report the mean, the (calibrated) spread and the domain.

    Parameters
    ----------
    members
        :class:`Predictor` objects of the same targets and units.
    std_scale
        One factor per target multiplying the members' standard deviation (fitted on a
        calibration part; 1 for the raw spread).
    domain
        ``elements`` and ``num_atoms`` (min, max of the basis cells) seen in training; None: no check.
        A structure is out of domain with an element never seen, or with a primitive cell more than
        ``SIZE_FACTOR`` (2) times smaller or larger than any seen.
    basis
        Per target: ``"primitive cell"`` for targets per primitive cell (any other cell given is
        reduced to its primitive cell first), ``"formula unit"`` for targets per formula unit of a
        fixed stoichiometry (a mean-pooled model: the cell given does not matter), ``"intensive"``.
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        std_scale: Sequence[float] | None = None,
        domain: dict[str, Any] | None = None,
        basis: Sequence[str] | None = None,
        name: str = "",
    ):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for member in members[1:]:
            if member.target_names != first.target_names or member.units != first.units:
                raise ValueError(
                    f"ensemble members disagree in targets: {member.target_names} {member.units} vs "
                    f"{first.target_names} {first.units}"
                )
        if first.task != "regression":
            raise ValueError("ensembles are for regression models")
        self.members = list(members)
        self.target_names = list(first.target_names)
        self.units = list(first.units)
        n = len(self.target_names)
        self.std_scale = np.ones(n) if std_scale is None else np.asarray(std_scale, dtype=np.float64)
        self.domain = domain
        self.basis = list(basis) if basis is not None else ["intensive"] * n
        self.name = name

    @classmethod
    def from_files(
        cls, paths: Sequence[str | os.PathLike], entry: dict[str, Any] | None = None, device: str = "cpu"
    ) -> Ensemble:
        """Members from checkpoint files; ``entry`` (a registry card) gives scale, domain and basis."""
        from .pretrained.registry import model_label

        members = [Predictor(load_checkpoint(p), device=device) for p in paths]
        if entry is None:
            return cls(members)
        return cls(
            members,
            std_scale=entry.get("std_scale"),
            domain=entry.get("domain"),
            basis=[t["basis"] for t in entry["targets"]] if "targets" in entry else None,
            name=model_label(entry),
        )

    @classmethod
    def pretrained(cls, name: str | os.PathLike, verify: bool = True, device: str = "cpu") -> Ensemble:
        """The shipped model ``name`` (``aiida-cgcnn pretrained list``), or a model folder (its
        ``card.json`` and member files, e.g. copied to a remote computer); files checked by sha256."""
        from .pretrained.registry import card, member_files

        if os.path.isdir(name):
            return cls.from_directory(name, verify=verify, device=device)
        entry = card(str(name))
        return cls.from_files(member_files(str(name), entry, verify=verify), entry, device=device)

    @classmethod
    def from_directory(cls, path: str | os.PathLike, verify: bool = True, device: str = "cpu") -> Ensemble:
        """A model folder as ``aiida-cgcnn pretrained build`` writes it: ``card.json`` and the members."""
        import json
        from pathlib import Path

        from .pretrained.registry import member_files

        folder = Path(path)
        if not (folder / "card.json").is_file():
            raise ValueError(f"{str(folder)!r} is not a model folder: it has no card.json")
        entry = json.loads((folder / "card.json").read_text())
        files = member_files(entry["name"], entry, verify=verify, folder=folder)
        return cls.from_files(files, entry, device=device)

    # --- prediction ------------------------------------------------------------------------------

    def predict(
        self,
        structures: Sequence[Any] | CrystalDataset,
        ids: Sequence[str] | None = None,
        skip_invalid: bool = False,
        calibrated: bool = True,
        batch_size: int = 256,
        workers: int | None = None,
        warn: bool = True,
        symprec: float = PRIMITIVE_SYMPREC,
    ) -> EnsemblePrediction:
        """Predict ``structures`` (pymatgen, ASE, files, :class:`Crystal` or a dataset) with every member.

        Invalid structures raise :class:`InvalidStructureError` naming them, or with ``skip_invalid``
        are listed in ``skipped`` while the rest are predicted. ``symprec`` (Å) is spglib's tolerance
        in finding primitive cells: the default accepts cells written with few digits; phonopy's
        default, 1e-5, keeps pseudo-symmetric cells as they are.
        """
        crystals, skipped = self._crystals(structures, ids, skip_invalid)
        given = np.array([c.num_atoms for c in crystals], dtype=np.int64)
        primitive = [primitive_crystal(c, symprec) for c in crystals]
        if any(b == "primitive cell" for b in self.basis):
            crystals = primitive  # a sum-pooled model scales with the cell: predict the basis cell
        members, kept, failures = self._run_members(crystals, batch_size, workers)
        if failures and not skip_invalid:
            position, message = failures[0]
            raise InvalidStructureError(crystals[position].id, message.split(": ", 1)[-1])
        skipped += [Skipped(crystals[p].id, m) for p, m in failures]
        crystals = [crystals[k] for k in kept]
        primitive = [primitive[k] for k in kept]
        given = given[kept]
        stack = np.stack(members)  # (M, N, T)
        std = stack.std(axis=0, ddof=0)
        if calibrated:
            std = std * self.std_scale[None, :]
        reasons = [self.domain_reason(c) for c in primitive]  # a supercell is as known as its cell
        flagged = [f"{c.id} ({r})" for c, r in zip(crystals, reasons, strict=True) if r]
        if flagged and warn:
            shown = "; ".join(flagged[:5]) + (f"; and {len(flagged) - 5} more" if len(flagged) > 5 else "")
            warnings.warn(
                f"{len(flagged)} structure(s) outside the training domain of {self.name or 'the model'}, "
                f"their predictions are extrapolations: {shown}",
                OutOfDomainWarning,
                stacklevel=2,
            )
        return EnsemblePrediction(
            ids=[c.id for c in crystals],
            mean=stack.mean(axis=0),
            std=std,
            members=stack,
            target_names=list(self.target_names),
            units=list(self.units),
            basis=list(self.basis),
            cell_atoms=given,
            basis_atoms=np.array([c.num_atoms for c in crystals], dtype=np.int64),
            formula_units=np.array([formula_units(c.numbers) for c in crystals], dtype=np.int64),
            formulas=[_formula(c.numbers) for c in crystals],
            out_of_domain=reasons,
            model=self.name,
            skipped=skipped,
        )

    def domain_reason(self, crystal: Crystal) -> str:
        """Why ``crystal`` lies outside the training domain, or an empty string."""
        if not self.domain:
            return ""
        from pymatgen.core.periodic_table import Element

        reasons = []
        seen = set(self.domain.get("elements", []))
        unseen = sorted({Element.from_Z(int(z)).symbol for z in crystal.numbers} - seen)
        if seen and unseen:
            reasons.append(f"elements never seen in training: {' '.join(unseen)}")
        low, high = self.domain.get("num_atoms", (1, math.inf))
        if not low / SIZE_FACTOR <= crystal.num_atoms <= high * SIZE_FACTOR:
            reasons.append(
                f"{crystal.num_atoms} atoms per cell, far outside the {low} to {high} of the training cells"
            )
        return "; ".join(reasons)

    def _crystals(self, structures, ids, skip_invalid) -> tuple[list[Crystal], list[Skipped]]:
        if isinstance(structures, CrystalDataset):
            return list(structures.crystals()), []
        crystals, _, skipped = named_crystals(structures, ids, skip_invalid)  # named as Predictor names them
        return crystals, skipped

    def _run_members(self, crystals: list[Crystal], batch_size: int, workers: int | None):
        """Every member's predictions for the crystals whose graph could be built; graphs are built
        once when the members share their graph settings and need no descriptors."""
        first = self.members[0]
        shared = all(
            m.graph_settings == first.graph_settings and not m.descriptors and not m.feature_names
            for m in self.members
        )
        if not shared:
            results = [m.predict(crystals, skip_invalid=True, batch_size=batch_size) for m in self.members]
            index = {c.id: k for k, c in enumerate(crystals)}
            kept = [index[i] for i in results[0].ids]
            failed = sorted(set(range(len(crystals))) - set(kept))
            reasons = {s.id: s.reason for s in results[0].skipped}
            return [r.values for r in results], kept, [(p, reasons.get(crystals[p].id, "")) for p in failed]
        # the graphs of one chunk at a time: they do not grow with the number of structures
        parts: list[list[np.ndarray]] = [[] for _ in self.members]
        kept = []
        failures: list[tuple[int, str]] = []
        for store, chunk_kept, chunk_failures in graph_chunks(crystals, first.graph_settings, workers):
            kept += chunk_kept
            failures += chunk_failures
            for part, member in zip(parts, self.members, strict=True):
                part.append(member._run(store, None, batch_size, False)[0])
            del store
        width = len(self.target_names)
        values = [np.concatenate(part) if part else np.zeros((0, width)) for part in parts]
        return values, kept, failures


def _formula(numbers: np.ndarray) -> str:
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    symbols, counts = np.unique(numbers, return_counts=True)
    return Composition(
        {Element.from_Z(int(z)).symbol: int(c) for z, c in zip(symbols, counts, strict=True)}
    ).reduced_formula
