"""``calculate_phonons``: the three steps of setup, forces and thermal in one call, for one crystal."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_cgcnn.phonons import (
    PhononRecord,
    PhononSettings,
    calculate_phonons,
    phonon_properties,
    produce_force_constants,
    relax_structure,
)

from .conftest import EMT_SETTINGS, emt_phonopy


def _step_by_step(atoms, temperatures):
    phonon, forces = emt_phonopy(atoms)
    produce_force_constants(phonon, forces, EMT_SETTINGS)
    return phonon, phonon_properties(phonon, temperatures, EMT_SETTINGS)


def test_same_numbers_as_the_steps(fcc_metals):
    temperatures = [100.0, 300.0]
    phonon, expected = _step_by_step(fcc_metals["Cu"], temperatures)
    record = calculate_phonons(fcc_metals["Cu"], EMT(), temperatures, EMT_SETTINGS, name="Cu")

    assert isinstance(record, PhononRecord)
    assert record.name == "Cu"
    got = record.properties
    for field in (
        "internal_energy_kjmol",
        "heat_capacity_jkmol",
        "entropy_jkmol",
        "free_energy_kjmol",
        "temperatures_k",
    ):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), rtol=1e-10, atol=1e-12)
    assert got.lowest_frequency_thz == pytest.approx(expected.lowest_frequency_thz, abs=1e-9)
    assert got.stable and got.n_atoms_primitive == 1 and got.mesh_numbers == expected.mesh_numbers
    # the record is phonopy's primitive cell, the cell U and Cv are per mole of
    np.testing.assert_allclose(record.lattice, phonon.primitive.cell, atol=1e-12)
    np.testing.assert_allclose(record.frac_coords, phonon.primitive.scaled_positions, atol=1e-12)
    assert record.numbers.tolist() == [29]


def test_record_is_the_primitive_cell_of_a_conventional_cell():
    """A cubic (4-atom) fcc cell in, phonopy's 1-atom primitive cell out, with the same properties
    per mole of it as the primitive cell given directly."""
    conventional = bulk("Cu", "fcc", a=3.59, cubic=True)
    settings = PhononSettings(min_supercell_length_angstrom=8.0, mesh=20.0)
    record = calculate_phonons(conventional, EMT(), [300.0], settings)
    assert len(record.numbers) == 1
    atoms = record.to_atoms()
    assert atoms.get_volume() == pytest.approx(conventional.get_volume() / 4, rel=1e-10)
    assert atoms.pbc.all() and atoms.get_chemical_symbols() == ["Cu"]
    primitive = calculate_phonons(bulk("Cu", "fcc", a=3.59), EMT(), [300.0], settings)
    assert record.properties.heat_capacity_jkmol[0] == pytest.approx(
        primitive.properties.heat_capacity_jkmol[0], rel=1e-2
    )


def test_unstable_crystal_is_flagged(bcc_copper):
    record = calculate_phonons(bcc_copper, EMT(), [300.0], EMT_SETTINGS)
    assert not record.properties.stable
    assert record.properties.lowest_frequency_thz < EMT_SETTINGS.stability_threshold_thz


def test_relax_first(fcc_metals):
    """``relax`` relaxes with the calculator before the displacements: the same as relaxing by hand."""
    strained = bulk("Cu", "fcc", a=3.59 * 1.02)
    relax = {"fmax": 1e-4, "steps": 200}
    record = calculate_phonons(strained, EMT(), [300.0], EMT_SETTINGS, relax=relax)
    relaxed = relax_structure(strained, EMT(), **relax).atoms
    _, expected = _step_by_step(relaxed, [300.0])
    assert record.to_atoms().get_volume() == pytest.approx(relaxed.get_volume(), rel=1e-10)
    assert record.properties.heat_capacity_jkmol[0] == pytest.approx(
        expected.heat_capacity_jkmol[0], rel=1e-10
    )
    unrelaxed = calculate_phonons(strained, EMT(), [300.0], EMT_SETTINGS)
    assert unrelaxed.to_atoms().get_volume() > record.to_atoms().get_volume()
