"""Phonon references with phonopy, no AiiDA: set up displacements, get forces from any engine, analyse.

phonopy's split is kept: :mod:`.setup` (unit cell -> displaced supercells), :mod:`.forces` (the
expensive step, any ASE calculator), :mod:`.thermal` (force constants, mesh, U, Cv, S, F per mole of
primitive cells, stability). :mod:`.io` reads existing calculations (phonondb archives, phonopy yaml),
:mod:`aiida_cgcnn.phonons.dataset` turns them into training datasets and :mod:`.compare` scores
predictions against them; :func:`.calculate_phonons` runs the three steps for one crystal and one calculator.
"""

from .calculate import calculate_phonons
from .dataset import PhononRecord, phonon_dataset
from .errors import PhononInputError
from .forces import EngineSpec, RelaxResult, compute_forces, load_calculator, relax_structure
from .io import PhonopyCalculation, find_phonopy_calculations, read_phonopy_calculation
from .settings import PhononSettings, supercell_matrix_for_length
from .setup import (
    atoms_to_phonopy,
    build_phonopy,
    displaced_supercells,
    generate_displacements,
    phonopy_to_atoms,
)
from .thermal import (
    GAS_CONSTANT_JKMOL,
    PhononProperties,
    dulong_petit_heat_capacity_jkmol,
    phonon_properties,
    produce_force_constants,
)

__all__ = [
    "GAS_CONSTANT_JKMOL",
    "EngineSpec",
    "PhononInputError",
    "PhononProperties",
    "PhononRecord",
    "PhononSettings",
    "PhonopyCalculation",
    "RelaxResult",
    "atoms_to_phonopy",
    "build_phonopy",
    "calculate_phonons",
    "compute_forces",
    "displaced_supercells",
    "dulong_petit_heat_capacity_jkmol",
    "find_phonopy_calculations",
    "generate_displacements",
    "load_calculator",
    "phonon_dataset",
    "phonon_properties",
    "phonopy_to_atoms",
    "produce_force_constants",
    "read_phonopy_calculation",
    "relax_structure",
    "supercell_matrix_for_length",
]
