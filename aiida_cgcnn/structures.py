"""Structures in: pymatgen ``Structure``, ASE ``Atoms``, CIF/POSCAR files, all turned into :class:`Crystal`.

A :class:`Crystal` is the plain-array form the rest of the core uses: lattice, fractional coordinates
and atomic numbers. Converting validates the structure and raises :class:`InvalidStructureError`
naming it, so bad input never fails deep inside a neighbour search.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .elements import MAX_ATOMIC_NUMBER, NOBLE_GASES
from .errors import InvalidStructureError, plain

__all__ = ["Crystal", "read_structure_file", "to_crystal", "validate_crystal"]


@dataclass(frozen=True)
class Crystal:
    """A periodic crystal as arrays.

    Attributes
    ----------
    id
        Identifier used in every message and output.
    lattice
        Lattice vectors as rows, Å, shape (3, 3).
    frac_coords
        Fractional coordinates, shape (n, 3).
    numbers
        Atomic numbers, shape (n,).
    """

    id: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    numbers: np.ndarray

    @property
    def num_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def cart_coords(self) -> np.ndarray:
        return self.frac_coords @ self.lattice

    def to_pymatgen(self):
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.numbers.tolist(), self.frac_coords)

    def to_ase(self):
        from ase import Atoms

        return Atoms(numbers=self.numbers, scaled_positions=self.frac_coords, cell=self.lattice, pbc=True)


def validate_crystal(crystal: Crystal) -> Crystal:
    """Check what every model needs: atoms, a 3D periodic cell, known elements, finite numbers."""
    sid = crystal.id
    if crystal.num_atoms == 0:
        raise InvalidStructureError(sid, "has no atoms")
    if not np.all(np.isfinite(crystal.lattice)) or not np.all(np.isfinite(crystal.frac_coords)):
        raise InvalidStructureError(sid, "has non-finite lattice or coordinates")
    volume = abs(float(np.linalg.det(crystal.lattice)))
    if volume < 1e-3:
        raise InvalidStructureError(sid, f"has a degenerate cell (volume {volume:.3g} Å^3)")
    numbers = crystal.numbers
    bad = sorted({int(z) for z in numbers if z < 1 or z > MAX_ATOMIC_NUMBER})
    if bad:
        raise InvalidStructureError(
            sid,
            f"contains elements with atomic numbers {bad}, outside the supported range 1-{MAX_ATOMIC_NUMBER}",
            "remove or replace those sites",
        )
    if all(int(z) in NOBLE_GASES for z in numbers):
        raise InvalidStructureError(
            sid, "contains only noble-gas atoms, which the models are not meant for", "remove it"
        )
    return crystal


def _from_pymatgen(structure: Any, sid: str) -> Crystal:
    if not structure.is_ordered:
        raise InvalidStructureError(
            sid,
            "has partial occupancy or disordered sites",
            "order it first, e.g. with pymatgen's OrderDisorderedStructureTransformation, or skip it",
        )
    from pymatgen.core.periodic_table import DummySpecies

    numbers = []
    for site in structure:
        specie = site.specie
        z = getattr(specie, "Z", None)
        if z is None or isinstance(specie, DummySpecies):  # DummySpecies.Z is hash(symbol), not None
            raise InvalidStructureError(sid, f"has a site of unknown element {specie!s}", "remove that site")
        numbers.append(int(z))
    return Crystal(
        sid,
        np.array(structure.lattice.matrix, dtype=np.float64),
        np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3),
        np.array(numbers, dtype=np.int64),
    )


def _from_ase(atoms: Any, sid: str) -> Crystal:
    if not all(atoms.pbc):
        raise InvalidStructureError(
            sid, f"is not periodic in all three directions (pbc={plain(atoms.pbc)})", "give it a 3D cell"
        )
    cell = np.array(atoms.cell[:], dtype=np.float64)
    if abs(np.linalg.det(cell)) < 1e-3:
        raise InvalidStructureError(sid, "has no cell", "set atoms.cell")
    return Crystal(
        sid,
        cell,
        np.array(atoms.get_scaled_positions(wrap=False), dtype=np.float64),
        np.array(atoms.numbers, dtype=np.int64),
    )


def read_structure_file(path: str | os.PathLike, sid: str | None = None) -> Crystal:
    """Read a CIF, POSCAR/CONTCAR (``.vasp``) or any file pymatgen or ASE understands."""
    path = Path(path)
    sid = sid if sid is not None else path.stem
    if not path.is_file():
        raise InvalidStructureError(sid, f"file {str(path)!r} does not exist")
    try:
        from pymatgen.core import Structure

        with _quiet():
            structure = Structure.from_file(str(path))
    except InvalidStructureError:
        raise
    except Exception as pymatgen_error:
        try:
            import ase.io

            return to_crystal(ase.io.read(str(path)), sid)
        except Exception:
            raise InvalidStructureError(
                sid, f"file {str(path)!r} is unreadable ({pymatgen_error})", "check its format"
            ) from None
    return to_crystal(structure, sid)


class _quiet:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def to_crystal(obj: Any, sid: str | None = None) -> Crystal:
    """Turn a pymatgen ``Structure``, ASE ``Atoms``, file path or :class:`Crystal` into a valid Crystal.

    Raises
    ------
    InvalidStructureError
        Naming ``sid`` (or the object's own label) and what to do.
    """
    if isinstance(obj, Crystal):
        crystal = obj if sid is None else Crystal(sid, obj.lattice, obj.frac_coords, obj.numbers)
        return validate_crystal(crystal)
    if isinstance(obj, (str, os.PathLike)):
        return read_structure_file(obj, sid)
    module = type(obj).__module__
    if any(cls.__module__.startswith("ase.") for cls in type(obj).__mro__):
        module = "ase"  # ASE Atoms and subclasses such as pymatgen's MSONAtoms (AseAtomsAdaptor.get_atoms)
    if module.startswith("pymatgen"):
        label = sid if sid is not None else (obj.properties.get("id") or obj.formula)
        if not hasattr(obj, "lattice"):
            raise InvalidStructureError(label, "is a molecule, not a periodic crystal")
        return validate_crystal(_from_pymatgen(obj, str(label)))
    if module.startswith("ase"):
        label = sid if sid is not None else obj.info.get("id", obj.get_chemical_formula())
        return validate_crystal(_from_ase(obj, str(label)))
    if hasattr(obj, "get_pymatgen_structure"):  # AiiDA StructureData, duck-typed: the core imports no AiiDA
        label = sid if sid is not None else (obj.uuid if obj.is_stored else obj.get_formula())
        return validate_crystal(_from_ase(obj.get_ase(), str(label)))
    raise InvalidStructureError(
        str(sid),
        f"is a {type(obj).__name__}, not a structure",
        "pass a pymatgen Structure, ASE Atoms or a file",
    )
