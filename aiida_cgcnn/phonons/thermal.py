"""The analysis: force constants, the sampling mesh, thermal properties and the stability check.

Everything is per mole of the primitive cell phonopy was given (phonopy's convention, and the
hybridization paper's Table 2): U and F in kJ/mol, S and Cv in J/(K·mol). phonopy gives F, S and Cv;
the phonon internal energy is U = F + T·S, which includes the zero-point energy (U(0 K) = ZPE).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from phonopy import Phonopy

from .errors import PhononInputError
from .settings import PhononSettings

__all__ = [
    "GAS_CONSTANT_JKMOL",
    "PhononProperties",
    "dulong_petit_heat_capacity_jkmol",
    "phonon_properties",
    "produce_force_constants",
]

#: Molar gas constant R in J/(K·mol) (CODATA 2018, exact).
GAS_CONSTANT_JKMOL = 8.314462618


def dulong_petit_heat_capacity_jkmol(n_atoms: int) -> float:
    """The classical (high-temperature) limit of Cv, 3·R·N in J/(K·mol), for N atoms per cell."""
    return 3.0 * GAS_CONSTANT_JKMOL * n_atoms


def produce_force_constants(
    phonon: Phonopy,
    forces: np.ndarray | None = None,
    settings: PhononSettings | None = None,
    name: str = "structure",
) -> None:
    """Compute the force constants of ``phonon`` from its displacement dataset and ``forces``
    (eV/Å, shape (supercells, atoms, 3); default: the forces already in the dataset).

    Follows ``phonopy.load``'s defaults exactly: compact force constants; with the traditional
    (finite-difference) calculator, symmetrised with symfc's projector as ``phonopy.load`` does. The
    order of these floating-point operations decides the sign of the ~1e-8 THz noise on the acoustic
    modes at Γ, which moves Cv by k_B per mode and q-point (~1e-4 relative at a mesh length of 50), so
    a reference is reproduced to 1e-4 only along the same path.

    Raises
    ------
    PhononInputError
        Naming ``name``, when there are no forces or they do not fit the displaced supercells.
    """
    settings = settings or PhononSettings()
    if phonon.dataset is None:
        raise PhononInputError(f"{name}: no displacement dataset")
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64)
        expected = (len(phonon.displacements), len(phonon.supercell), 3)
        if forces.shape != expected:
            raise PhononInputError(
                f"{name}: forces of shape {forces.shape} do not fit {expected[0]} displaced supercells of "
                f"{expected[1]} atoms"
            )
        phonon.forces = forces
    if not _has_forces(phonon):
        raise PhononInputError(f"{name}: missing forces: the displacement dataset has no forces")
    if settings.fc_calculator == "traditional":
        phonon.produce_force_constants(calculate_full_force_constants=False)
        phonon.symmetrize_force_constants(show_drift=False, use_symfc_projector=True)
    else:
        # the only other calculator the settings accept
        phonon.produce_force_constants(calculate_full_force_constants=False, fc_calculator="symfc")


def _has_forces(phonon: Phonopy) -> bool:
    dataset = phonon.dataset
    if dataset is None:
        return False
    first_atoms = dataset.get("first_atoms")
    if isinstance(first_atoms, list):  # type-1 dataset: one displacement per supercell
        return bool(first_atoms) and all("forces" in d for d in first_atoms)
    return dataset.get("forces") is not None


@dataclass(frozen=True)
class PhononProperties:
    """Thermal properties at a list of temperatures and the stability of one phonon calculation.

    Per mole of the primitive cell (``n_atoms_primitive`` atoms, formula ``formula``).

    Attributes
    ----------
    temperatures_k
        Temperatures in K.
    internal_energy_kjmol
        U = F + T·S in kJ/mol, zero-point energy included.
    heat_capacity_jkmol
        Cv in J/(K·mol).
    entropy_jkmol
        S in J/(K·mol).
    free_energy_kjmol
        Helmholtz free energy F in kJ/mol.
    zero_point_energy_kjmol
        Σ ħω/2 over the mesh, kJ/mol.
    lowest_frequency_thz
        Lowest frequency on the mesh in THz; imaginary modes are negative.
    stability_threshold_thz
        Below it, the calculation is unstable (:attr:`stable` is False).
    n_imaginary_modes
        Modes (q-point and band, over the full mesh) below the threshold.
    n_qpoints
        q-points of the full mesh; one Γ acoustic mode's share of Cv is R/n_qpoints.
    """

    temperatures_k: np.ndarray
    internal_energy_kjmol: np.ndarray
    heat_capacity_jkmol: np.ndarray
    entropy_jkmol: np.ndarray
    free_energy_kjmol: np.ndarray
    zero_point_energy_kjmol: float
    lowest_frequency_thz: float
    stability_threshold_thz: float
    n_imaginary_modes: int
    n_atoms_primitive: int
    formula: str
    mesh_numbers: tuple[int, int, int]
    n_qpoints: int
    nac: bool

    @property
    def stable(self) -> bool:
        """No mesh frequency below the stability threshold."""
        return self.lowest_frequency_thz >= self.stability_threshold_thz

    def index(self, temperature_k: float) -> int:
        matches = np.flatnonzero(np.isclose(self.temperatures_k, temperature_k, rtol=0, atol=1e-6))
        if not len(matches):
            raise KeyError(
                f"no thermal properties at {temperature_k} K (have {self.temperatures_k.tolist()})"
            )
        return int(matches[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-storable record; keys and units as in phonondb's ``phonondb-300K.jsonl.gz``."""
        return {
            "temperatures_K": self.temperatures_k.tolist(),
            "U_kJmol": self.internal_energy_kjmol.tolist(),
            "Cv_JKmol": self.heat_capacity_jkmol.tolist(),
            "S_JKmol": self.entropy_jkmol.tolist(),
            "F_kJmol": self.free_energy_kjmol.tolist(),
            "zero_point_energy_kJmol": self.zero_point_energy_kjmol,
            "min_freq_THz": self.lowest_frequency_thz,
            "stability_threshold_THz": self.stability_threshold_thz,
            "n_imaginary_modes": self.n_imaginary_modes,
            "stable": self.stable,
            "natoms": self.n_atoms_primitive,
            "formula": self.formula,
            "mesh": list(self.mesh_numbers),
            "n_qpoints": self.n_qpoints,
            "nac": self.nac,
            "per": "mole of primitive cells",
        }


def phonon_properties(
    phonon: Phonopy, temperatures_k: Sequence[float] = (300.0,), settings: PhononSettings | None = None
) -> PhononProperties:
    """Run the mesh and the thermal properties of ``phonon`` (force constants already produced).

    The mesh is Γ-centred (a length in Å or three integers, ``settings.mesh``). The acoustic modes at
    Γ enter the sums as ``settings.gamma_acoustic`` says (by default as phonopy and phonondb do).
    """
    settings = settings or PhononSettings()
    temperatures = np.asarray(list(temperatures_k), dtype=np.float64)
    if temperatures.ndim != 1 or not len(temperatures) or (temperatures < 0).any():
        raise PhononInputError(
            f"temperatures must be a non-empty list of values >= 0 K, not {temperatures_k!r}"
        )
    if phonon.force_constants is None:
        raise PhononInputError("no force constants: call produce_force_constants first")
    from phonopy.phonon.mesh import Mesh, MeshGRGridFallbackWarning
    from phonopy.phonon.thermal_properties import GammaAcousticWarning

    with warnings.catch_warnings():
        # phonopy's notes on what it does by default (a generalized regular grid where a mesh length
        # breaks the point group; Γ acoustic modes in the sums), which is what phonondb did too
        warnings.simplefilter("ignore", MeshGRGridFallbackWarning)
        warnings.simplefilter("ignore", GammaAcousticWarning)
        phonon.run_mesh(settings.mesh_value, is_gamma_center=True)
        phonon.run_thermal_properties(
            temperatures=temperatures, exclude_gamma_acoustic=settings.gamma_acoustic == "exclude"
        )
    mesh, thermal, mesh_numbers = phonon.mesh, phonon.thermal_properties, phonon.mesh_numbers
    # run_mesh without use_iter_mesh and run_thermal_properties have just set them
    assert isinstance(mesh, Mesh) and thermal is not None and mesh_numbers is not None
    assert thermal.zero_point_energy is not None
    frequencies = mesh.frequencies
    weights = mesh.weights
    free_energy = np.asarray(thermal.free_energy, dtype=np.float64)
    entropy = np.asarray(thermal.entropy, dtype=np.float64)
    # U = F + T·S; F in kJ/mol, T·S in J/mol
    internal_energy = free_energy + temperatures * entropy / 1000.0
    below = frequencies < settings.stability_threshold_thz
    primitive = phonon.primitive
    return PhononProperties(
        temperatures_k=temperatures,
        internal_energy_kjmol=internal_energy,
        heat_capacity_jkmol=np.asarray(thermal.heat_capacity, dtype=np.float64),
        entropy_jkmol=entropy,
        free_energy_kjmol=free_energy,
        zero_point_energy_kjmol=float(thermal.zero_point_energy),
        lowest_frequency_thz=float(frequencies.min()),
        stability_threshold_thz=float(settings.stability_threshold_thz),
        n_imaginary_modes=int((below.sum(axis=1) * weights).sum()),
        n_atoms_primitive=len(primitive),
        formula=_formula(primitive.symbols),
        mesh_numbers=(int(mesh_numbers[0]), int(mesh_numbers[1]), int(mesh_numbers[2])),
        n_qpoints=int(weights.sum()),
        nac=phonon.nac_params is not None,
    )


def _formula(symbols: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in sorted(counts.items()))
