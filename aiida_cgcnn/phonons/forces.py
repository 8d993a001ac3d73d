"""The expensive step: forces on displaced supercells from any force engine (an ASE calculator).

An engine is named by import path and keyword arguments (``"ase.calculators.emt.EMT"``,
``"chgnet.model.dynamics.CHGNetCalculator"``), so it can be stored in a provenance graph and rebuilt
on another computer.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PhononInputError

__all__ = ["EngineSpec", "RelaxResult", "compute_forces", "load_calculator", "relax_structure"]


@dataclass(frozen=True)
class EngineSpec:
    """A force engine: an ASE calculator class by import path, its keyword arguments, and optionally
    a relaxation of the unit cell before the displacements.

    Attributes
    ----------
    calculator
        ``"package.module.Class"`` or ``"package.module:Class"``, or a factory function.
    kwargs
        Keyword arguments of the calculator.
    relax
        ``None`` (use the structure as given) or relaxation settings: ``fmax`` (eV/Å, default 1e-3),
        ``steps`` (default 500), ``cell`` (also relax the cell, default True), ``keep_symmetry``
        (default True).
    """

    calculator: str
    kwargs: dict
    relax: dict | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EngineSpec:
        values = dict(values)
        unknown = set(values) - {"calculator", "kwargs", "relax"}
        if unknown:
            raise PhononInputError(f"unknown engine keys {sorted(unknown)}; use calculator, kwargs, relax")
        if not isinstance(values.get("calculator"), str) or not values["calculator"]:
            raise PhononInputError("an engine needs 'calculator': the import path of an ASE calculator")
        relax = values.get("relax")
        if relax is not None:
            relax = dict(relax)
            bad = set(relax) - {"fmax", "steps", "cell", "keep_symmetry"}
            if bad:
                raise PhononInputError(
                    f"unknown relax settings {sorted(bad)}; use fmax, steps, cell, keep_symmetry"
                )
        return cls(values["calculator"], dict(values.get("kwargs") or {}), relax)

    def to_dict(self) -> dict[str, Any]:
        return {"calculator": self.calculator, "kwargs": dict(self.kwargs), "relax": self.relax}

    def make(self):
        """A new calculator instance."""
        return load_calculator(self.calculator, self.kwargs)


def load_calculator(path: str, kwargs: dict | None = None):
    """Import ``path`` (``module.Class`` or ``module:Class``) and call it with ``kwargs``."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise PhononInputError(f"calculator {path!r} is not an import path like 'ase.calculators.emt.EMT'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise PhononInputError(f"cannot import the calculator {path!r}: {error}") from error
    return factory(**(kwargs or {}))


def compute_forces(supercells: Sequence[Any], calculator: Any) -> np.ndarray:
    """Forces in eV/Å on each supercell (ASE ``Atoms``), shape (supercells, atoms, 3), float64.

    One calculator serves all supercells; it is attached to copies, so the inputs stay untouched.
    """
    forces = []
    for atoms in supercells:
        copy = atoms.copy()
        copy.calc = calculator
        forces.append(np.array(copy.get_forces(), dtype=np.float64))
    return np.array(forces)


@dataclass(frozen=True)
class RelaxResult:
    """A relaxed unit cell, whether the force criterion was met, the steps taken and the final
    largest force in eV/Å."""

    atoms: Any
    converged: bool
    steps: int
    max_force_ev_per_angstrom: float


def relax_structure(
    atoms: Any,
    calculator: Any,
    fmax: float = 1e-3,
    steps: int = 500,
    cell: bool = True,
    keep_symmetry: bool = True,
) -> RelaxResult:
    """Relax positions (and the cell) of ``atoms`` with ``calculator`` (FIRE, ASE's Fréchet cell filter).

    Phonons of a structure that is not at a minimum of the engine's energy carry the residual forces
    into the force constants; a universal potential's minimum differs from DFT's, so it is relaxed
    first. ``keep_symmetry`` keeps the space group (ASE ``FixSymmetry``), as the displacements assume.
    """
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calculator
    if keep_symmetry:
        from ase.constraints import FixSymmetry

        work.set_constraint(FixSymmetry(work))
    target: Any = work
    if cell:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(work)
    optimizer = FIRE(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=steps))
    max_force = float(np.linalg.norm(target.get_forces(), axis=1).max())
    relaxed = work.copy()
    relaxed.set_constraint()
    return RelaxResult(relaxed, converged, int(optimizer.nsteps), max_force)
