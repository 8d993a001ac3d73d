"""Thermal properties of EMT fcc metals: the core against plain phonopy, U = F + T·S with the zero-point
energy, the Debye/Dulong-Petit limits, and the stability check on bcc Cu."""

from __future__ import annotations

import dataclasses

import numpy as np
import phonopy
import pytest
from ase.calculators.emt import EMT
from phonopy.structure.atoms import PhonopyAtoms

from aiida_cgcnn.phonons import (
    GAS_CONSTANT_JKMOL,
    PhononInputError,
    PhononSettings,
    build_phonopy,
    dulong_petit_heat_capacity_jkmol,
    phonon_properties,
    produce_force_constants,
    supercell_matrix_for_length,
)

from .conftest import EMT_SETTINGS, emt_phonopy

TEMPERATURES = [0.0, 10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0]


def _plain_phonopy(atoms, temperatures, exclude_gamma_acoustic):
    """The textbook phonopy run, written out without the package."""
    from ase import Atoms

    cell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell[:],
        scaled_positions=atoms.get_scaled_positions(),
    )
    phonon = phonopy.Phonopy(cell, supercell_matrix=np.diag([4, 4, 4]), primitive_matrix="auto")
    phonon.generate_displacements(distance=0.01)
    forces = []
    for supercell in phonon.supercells_with_displacements:
        displaced = Atoms(supercell.symbols, cell=supercell.cell, positions=supercell.positions, pbc=True)
        displaced.calc = EMT()
        forces.append(displaced.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants(use_symfc_projector=True)  # phonopy.load's default
    phonon.run_mesh(20.0, is_gamma_center=True)
    phonon.run_thermal_properties(temperatures=temperatures, exclude_gamma_acoustic=exclude_gamma_acoustic)
    thermal = phonon.thermal_properties
    internal = thermal.free_energy + np.asarray(temperatures) * thermal.entropy / 1000.0
    return internal, thermal.heat_capacity, phonon.mesh.weights.sum()


@pytest.fixture(scope="module")
def properties(fcc_metals):
    """Each metal's properties with the default (phonopy's) and the deterministic Γ treatment."""
    out = {}
    for name, atoms in fcc_metals.items():
        for mode in ("phonopy", "exclude"):
            settings = dataclasses.replace(EMT_SETTINGS, gamma_acoustic=mode)
            phonon, forces = emt_phonopy(atoms, settings)
            produce_force_constants(phonon, forces, settings)
            out[name, mode] = phonon_properties(phonon, TEMPERATURES, settings)
    return out


@pytest.mark.parametrize("metal", ["Cu", "Al", "Ni"])
def test_matches_plain_phonopy(metal, fcc_metals, properties):
    atoms = fcc_metals[metal]
    u, cv, n_q = _plain_phonopy(atoms, TEMPERATURES, exclude_gamma_acoustic=True)
    ours = properties[metal, "exclude"]
    assert ours.n_atoms_primitive == 1 and ours.n_qpoints == n_q
    np.testing.assert_allclose(ours.internal_energy_kjmol, u, rtol=1e-10)
    np.testing.assert_allclose(ours.heat_capacity_jkmol[1:], cv[1:], rtol=1e-10)

    # phonopy's default counts a Γ acoustic mode when its ~1e-8 THz noise is positive: the two runs
    # may differ by whole modes, k_B per mode (Cv) and k_B·T (U) over the mesh, and by nothing else
    u, cv, _ = _plain_phonopy(atoms, TEMPERATURES, exclude_gamma_acoustic=False)
    default = properties[metal, "phonopy"]
    modes_cv = (default.heat_capacity_jkmol[1:] - cv[1:]) / (GAS_CONSTANT_JKMOL / n_q)
    np.testing.assert_allclose(modes_cv, np.round(modes_cv), atol=1e-4)
    assert np.all(np.abs(modes_cv) <= 3) and len(set(np.round(modes_cv))) == 1
    hot = np.asarray(TEMPERATURES[1:])
    modes_u = (default.internal_energy_kjmol[1:] - u[1:]) / (GAS_CONSTANT_JKMOL * hot / 1000.0 / n_q)
    np.testing.assert_allclose(modes_u[-1], modes_cv[-1], atol=1e-3)  # k_B·T per mode once classical


@pytest.mark.parametrize("metal", ["Cu", "Al", "Ni"])
def test_internal_energy_is_free_energy_plus_ts_with_zero_point(metal, properties):
    p = properties[metal, "phonopy"]
    T = p.temperatures_k
    np.testing.assert_allclose(
        p.internal_energy_kjmol, p.free_energy_kjmol + T * p.entropy_jkmol / 1000, rtol=1e-12
    )
    # at 0 K only the zero-point energy is left: U = F = ZPE, S = Cv = 0
    assert p.internal_energy_kjmol[0] == pytest.approx(p.zero_point_energy_kjmol, rel=1e-10)
    assert p.heat_capacity_jkmol[0] == 0.0 and p.entropy_jkmol[0] == 0.0
    assert (
        1.0 < p.zero_point_energy_kjmol < 5.0
    )  # a few kJ/mol for a metal with a Debye temperature of ~300 K


@pytest.mark.parametrize("metal", ["Cu", "Al", "Ni"])
def test_debye_limits(metal, properties):
    """Cv < 3R·N, rising with T towards 3R·N (Dulong-Petit); U → 3R·N·T (equipartition)."""
    for mode in ("phonopy", "exclude"):
        p = properties[metal, mode]
        limit = dulong_petit_heat_capacity_jkmol(p.n_atoms_primitive)
        assert limit == pytest.approx(3 * 8.314462618)
        cv = p.heat_capacity_jkmol
        assert np.all(cv < limit) and np.all(np.diff(cv) > 0)
        assert cv[3] < limit and cv[3] > 0.85 * limit  # 300 K: above most of the Debye temperatures
        # at 10000 K every mode is classical, k_B each, save the Γ acoustic modes left out of the sums
        # (at most 3 of the mesh's 3·N·n_q) and a quantum correction of ~(θ_D/T)²/20 ≈ 5e-5
        share = 3 * GAS_CONSTANT_JKMOL / p.n_qpoints
        assert limit - share - 1e-4 * limit < cv[-1] < limit
        T = p.temperatures_k[-1]
        assert (
            limit * T / 1000 * (1 - share / limit - 1e-4)
            < p.internal_energy_kjmol[-1]
            < limit * T / 1000 * 1.0001
        )


def test_unstable_bcc_copper_is_flagged(bcc_copper):
    phonon, forces = emt_phonopy(bcc_copper)
    produce_force_constants(phonon, forces, EMT_SETTINGS)
    p = phonon_properties(phonon, [300.0], EMT_SETTINGS)
    assert p.lowest_frequency_thz < -0.5 and not p.stable and p.n_imaginary_modes > 0
    record = p.to_dict()
    assert record["stable"] is False and record["min_freq_THz"] == p.lowest_frequency_thz
    lenient = dataclasses.replace(EMT_SETTINGS, stability_threshold_thz=-5.0)
    assert phonon_properties(phonon, [300.0], lenient).stable


def test_supercell_for_a_minimum_length():
    a = 3.6
    fcc = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    # the fcc primitive cell's faces are a/√3 apart: 5 cells span 10.4 Å
    np.testing.assert_array_equal(supercell_matrix_for_length(fcc, 10.0), np.diag([5, 5, 5]))
    np.testing.assert_array_equal(supercell_matrix_for_length(4.0 * np.eye(3), 10.0), np.diag([3, 3, 3]))
    np.testing.assert_array_equal(
        supercell_matrix_for_length(np.diag([4.0, 4.0, 12.0]), 10.0), np.diag([3, 3, 1])
    )


def test_settings_reject_bad_values():
    with pytest.raises(PhononInputError, match=r"unknown phonopy settings.*'meshh'"):
        PhononSettings.from_dict({"meshh": 20})
    with pytest.raises(PhononInputError, match="supercell_matrix"):
        PhononSettings.from_dict({"supercell_matrix": [2, 2]})
    with pytest.raises(PhononInputError, match="gamma_acoustic"):
        PhononSettings.from_dict({"gamma_acoustic": "sometimes"})
    settings = PhononSettings.from_dict(
        {"supercell_matrix": [[2, 0, 0], [0, 2, 0], [0, 0, 2]], "mesh": [8, 8, 8]}
    )
    assert PhononSettings.from_dict(settings.to_dict()) == settings


def test_bad_setup_and_forces_name_the_structure(fcc_metals):
    from ase.build import bulk

    rocksalt = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    with pytest.raises(PhononInputError, match=r"'NaCl-cubic'.*primitive matrix"):
        build_phonopy(
            rocksalt,
            PhononSettings(primitive_matrix=((0.5, 0, 0), (0, 1, 0), (0, 0, 1))),
            name="'NaCl-cubic'",
        )
    phonon, forces = emt_phonopy(fcc_metals["Cu"])
    with pytest.raises(PhononInputError, match=r"'Cu'.*do not fit"):
        produce_force_constants(phonon, forces[:, :10], name="'Cu'")
    fresh = build_phonopy(fcc_metals["Cu"], EMT_SETTINGS)
    fresh.generate_displacements()
    with pytest.raises(PhononInputError, match="'Cu': missing forces"):
        produce_force_constants(fresh, name="'Cu'")
