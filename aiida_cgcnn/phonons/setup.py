"""Set-up of a finite-displacement calculation: unit cell -> phonopy -> displaced supercells.

phonopy's split is kept: this module sets up; :mod:`.forces` is the expensive step (any engine);
:mod:`.thermal` is the analysis.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from .errors import PhononInputError
from .settings import PhononSettings

__all__ = [
    "atoms_to_phonopy",
    "build_phonopy",
    "displaced_supercells",
    "generate_displacements",
    "phonopy_to_atoms",
]


def atoms_to_phonopy(atoms: Any) -> PhonopyAtoms:
    """An ASE ``Atoms`` (or a ``PhonopyAtoms``) as ``PhonopyAtoms``.

    Masses are phonopy's own table (not ASE's), as in any phonopy calculation, so frequencies agree
    with phonopy run from files.
    """
    if isinstance(atoms, PhonopyAtoms):
        return atoms
    return PhonopyAtoms(
        symbols=list(atoms.get_chemical_symbols()),
        cell=np.array(atoms.cell[:], dtype=float),
        scaled_positions=np.array(atoms.get_scaled_positions(wrap=False), dtype=float),
    )


def phonopy_to_atoms(cell: PhonopyAtoms):
    """A ``PhonopyAtoms`` as a periodic ASE ``Atoms`` (Cartesian positions kept as they are)."""
    from ase import Atoms

    return Atoms(
        symbols=list(cell.symbols), cell=np.array(cell.cell), positions=np.array(cell.positions), pbc=True
    )


def build_phonopy(unitcell: Any, settings: PhononSettings | None = None, name: str = "structure") -> Phonopy:
    """A ``Phonopy`` for ``unitcell`` (ASE ``Atoms`` or ``PhonopyAtoms``) with the supercell and
    primitive cell of ``settings``; no displacements yet.

    Raises
    ------
    PhononInputError
        Naming ``name``, when phonopy refuses the cell or the matrices (e.g. a primitive matrix that
        does not map the unit cell onto whole atoms).
    """
    settings = settings or PhononSettings()
    cell = atoms_to_phonopy(unitcell)
    if len(cell) == 0:
        raise PhononInputError(f"{name}: the unit cell has no atoms")
    supercell_matrix = settings.supercell_matrix_for(np.array(cell.cell))
    try:
        return Phonopy(
            cell,
            supercell_matrix=supercell_matrix,
            primitive_matrix=settings.primitive_matrix_value(),
            symprec=settings.symprec,
        )
    except Exception as error:  # phonopy raises RuntimeError/ValueError/TypeError for bad matrices
        raise PhononInputError(
            f"{name}: phonopy cannot set up this cell with supercell matrix {supercell_matrix.tolist()} and "
            f"primitive matrix {settings.primitive_matrix!r}: {error}"
        ) from error


def generate_displacements(phonon: Phonopy, settings: PhononSettings | None = None) -> int:
    """Generate the symmetry-reduced displacements of ``settings``; returns how many supercells."""
    settings = settings or PhononSettings()
    plusminus: Literal["auto"] | bool = (
        "auto" if settings.is_plusminus == "auto" else bool(settings.is_plusminus)
    )
    phonon.generate_displacements(distance=settings.displacement_angstrom, is_plusminus=plusminus)
    return len(phonon.supercells_with_displacements or ())


def displaced_supercells(phonon: Phonopy) -> list:
    """The supercells with displacements as ASE ``Atoms``, in the order of phonopy's dataset."""
    cells = phonon.supercells_with_displacements
    if cells is None:
        raise PhononInputError("no displacements: call generate_displacements first")
    return [phonopy_to_atoms(cell) for cell in cells]
