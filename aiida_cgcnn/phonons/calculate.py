"""One call for one crystal: set up, forces from an ASE calculator, analysis (the three steps of
:mod:`.setup`, :mod:`.forces` and :mod:`.thermal` in a row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dataset import PhononRecord
from .forces import compute_forces, relax_structure
from .settings import PhononSettings
from .setup import build_phonopy, displaced_supercells, generate_displacements
from .thermal import phonon_properties, produce_force_constants

__all__ = ["calculate_phonons"]


def calculate_phonons(
    atoms: Any,
    calculator: Any,
    temperatures_k: Sequence[float] = (300.0,),
    settings: PhononSettings | None = None,
    name: str = "structure",
    relax: dict | None = None,
) -> PhononRecord:
    """U, Cv, S, F and the stability of ``atoms`` (a unit cell, ASE ``Atoms``) with ``calculator``.

    Parameters
    ----------
    relax
        ``None``, or keyword arguments of :func:`~.forces.relax_structure` (``fmax`` in eV/Å, ...)
        to relax the unit cell with the calculator first.

    Returns
    -------
    PhononRecord
        phonopy's primitive cell (what a model must be given) and its properties per mole of it.
    """
    from ase.data import atomic_numbers

    settings = settings or PhononSettings()
    if relax is not None:
        atoms = relax_structure(atoms, calculator, **relax).atoms
    phonon = build_phonopy(atoms, settings, name=name)
    generate_displacements(phonon, settings)
    forces = compute_forces(displaced_supercells(phonon), calculator)
    produce_force_constants(phonon, forces, settings, name=name)
    properties = phonon_properties(phonon, temperatures_k, settings)
    primitive = phonon.primitive
    return PhononRecord(
        name=name,
        lattice=np.array(primitive.cell, dtype=np.float64),
        frac_coords=np.array(primitive.scaled_positions, dtype=np.float64),
        numbers=np.array([atomic_numbers[s] for s in primitive.symbols], dtype=np.int64),
        properties=properties,
    )
