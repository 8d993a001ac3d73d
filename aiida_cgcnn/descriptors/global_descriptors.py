"""The 14 global descriptors: density, packing, symmetry, complexity and the Niggli primitive cell.

Symmetry comes from spglib called on the arrays directly, with the tolerances matminer passes
through ``SpacegroupAnalyzer``; the primitive cell from pymatgen's own algorithm, which is only
run when it can find something (see :func:`primitive_cell`).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache, reduce

import numpy as np

from ..errors import InvalidStructureError
from ..structures import Crystal
from .definitions import CRYSTAL_SYSTEMS, DescriptorSettings

__all__ = ["crystal_system", "global_descriptors", "primitive_cell"]

_ANGSTROM3_IN_CM3 = 1e-24


@lru_cache(maxsize=1)
def _element_tables() -> tuple[np.ndarray, np.ndarray]:
    """Atomic masses (amu) and pymatgen's atomic radii (Å; NaN where pymatgen has none) by Z."""
    from pymatgen.core.periodic_table import Element

    from ..elements import MAX_ATOMIC_NUMBER

    masses = np.full(MAX_ATOMIC_NUMBER + 1, np.nan)
    radii = np.full(MAX_ATOMIC_NUMBER + 1, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_ATOMIC_NUMBER + 1):
            element = Element.from_Z(z)
            masses[z] = float(element.atomic_mass)
            if element.atomic_radius is not None:
                radii[z] = float(element.atomic_radius)
    return masses, radii


@lru_cache(maxsize=1)
def _grams_per_amu() -> float:
    from pymatgen.core.units import Mass

    return float(Mass(1.0, "amu").to("g"))


def crystal_system(space_group_number: int) -> str:
    """pymatgen's ``SpacegroupAnalyzer.get_crystal_system`` for an international number."""
    bounds = (
        (3, "triclinic"),
        (16, "monoclinic"),
        (75, "orthorhombic"),
        (143, "tetragonal"),
        (168, "trigonal"),
        (195, "hexagonal"),
    )
    for bound, system in bounds:
        if space_group_number < bound:
            return system
    return "cubic"


def _symmetry_dataset(crystal: Crystal, symprec: float, angle_tolerance: float):
    import spglib

    cell = (crystal.lattice, crystal.frac_coords, crystal.numbers.astype(np.intc))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error handling
            dataset = spglib.get_symmetry_dataset(cell, symprec, angle_tolerance)  # type: ignore[arg-type]
    except Exception as error:  # spglib raises its own C++ error type
        dataset, reason = None, str(error)
    else:
        reason = "spglib found no symmetry"
    if dataset is None:
        raise InvalidStructureError(crystal.id, f"has no space group at symprec={symprec} ({reason})")
    return dataset


def primitive_cell(crystal: Crystal, tolerance: float = 0.25) -> tuple[int, tuple, tuple]:
    """Number of atoms, lattice lengths (Å) and angles (degrees) of the Niggli-reduced primitive cell.

    ``Structure.get_primitive_structure`` only looks for smaller cells among supercells whose size
    divides every element's count; when the counts have no common divisor it returns the cell
    unchanged, so the pymatgen ``Structure`` is built only when the search can succeed.
    """
    from pymatgen.core import Lattice

    counts = np.unique(crystal.numbers, return_counts=True)[1]
    if reduce(math.gcd, counts.tolist()) == 1:
        natoms, lattice = crystal.num_atoms, Lattice(crystal.lattice)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            primitive = crystal.to_pymatgen().get_primitive_structure(tolerance=tolerance)
        natoms, lattice = len(primitive), primitive.lattice
    niggli = lattice.get_niggli_reduced_lattice()
    return natoms, tuple(map(float, niggli.abc)), tuple(map(float, niggli.angles))


def global_descriptors(
    crystal: Crystal, settings: DescriptorSettings, names: set[str] | None = None
) -> dict[str, float]:
    """The global descriptors of ``crystal`` (those in ``names``, or all).

    Raises
    ------
    InvalidStructureError
        If spglib finds no space group.
    """
    wanted = (lambda name: True) if names is None else names.__contains__
    masses, radii = _element_tables()
    numbers = crystal.numbers
    n = crystal.num_atoms
    volume = abs(float(np.linalg.det(crystal.lattice)))
    values: dict[str, float] = {}
    if wanted("density"):
        values["density"] = float(masses[numbers].sum()) * _grams_per_amu() / (volume * _ANGSTROM3_IN_CM3)
    if wanted("vpa"):
        values["vpa"] = volume / n
    if wanted("packing_frac"):
        # NaN for elements pymatgen gives no atomic radius (He, Ne, Kr, Xe, At, Rn, Fr, Cm-Fm)
        values["packing_frac"] = 4.0 * math.pi * float(np.sum(radii[numbers] ** 3)) / (3.0 * volume)
    if wanted("struct_comp_atom") or wanted("struct_comp_cell"):
        dataset = _symmetry_dataset(crystal, settings.complexity_symprec, settings.angle_tolerance)
        probability = np.unique(dataset.equivalent_atoms, return_counts=True)[1] / n
        entropy = float(-np.sum(probability * np.log2(probability)))
        values["struct_comp_atom"] = entropy
        values["struct_comp_cell"] = entropy * n
    if wanted("crys_sys") or wanted("space_group_num"):
        number = int(_symmetry_dataset(crystal, settings.symprec, settings.angle_tolerance).number)
        values["crys_sys"] = float(CRYSTAL_SYSTEMS.index(crystal_system(number)) + 1)
        values["space_group_num"] = float(number)
    if any(wanted(k) for k in ("natoms", "a", "b", "c", "alpha", "beta", "gamma")):
        natoms, lengths, angles = primitive_cell(crystal, settings.primitive_tolerance)
        # the paper orders them: a >= b >= c and alpha >= beta >= gamma
        a, b, c = sorted(lengths, reverse=True)
        alpha, beta, gamma = sorted(angles, reverse=True)
        values.update(natoms=float(natoms), a=a, b=b, c=c, alpha=alpha, beta=beta, gamma=gamma)
    return {k: v for k, v in values.items() if wanted(k)}
