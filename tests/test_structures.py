"""Structures in (pymatgen, ASE, files, Crystal) and their validation, each error naming the structure."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_cgcnn.errors import InvalidStructureError
from aiida_cgcnn.structures import Crystal, read_structure_file, to_crystal
from tests.builders import crystal, rocksalt_primitive


def pymatgen_nacl():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_pymatgen_ase_file_and_crystal_inputs_agree(tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = pymatgen_nacl()
    from_pmg = to_crystal(structure, "a")
    from_ase = to_crystal(AseAtomsAdaptor.get_atoms(structure), "b")
    path = tmp_path / "NaCl.cif"
    structure.to(filename=str(path))
    from_file = to_crystal(path)
    assert from_file.id == "NaCl"  # a file's id is its stem
    for c in (from_ase, from_file, to_crystal(from_pmg, "c")):
        np.testing.assert_allclose(c.lattice, from_pmg.lattice, atol=1e-6)
        np.testing.assert_allclose(c.frac_coords % 1.0, from_pmg.frac_coords % 1.0, atol=1e-6)
        np.testing.assert_array_equal(c.numbers, [11, 17])
    assert to_crystal(from_pmg, "renamed").id == "renamed"
    np.testing.assert_allclose(from_pmg.cart_coords[1], [2.82, 2.82, 2.82])
    back = from_pmg.to_pymatgen()
    assert back.composition.reduced_formula == "NaCl"
    assert from_pmg.to_ase().get_chemical_formula() == "ClNa"


def test_partial_occupancy_is_rejected():
    from pymatgen.core import Lattice, Structure

    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(InvalidStructureError, match="partial occupancy") as info:
        to_crystal(disordered, "FeNi-disordered")
    assert info.value.structure_id == "FeNi-disordered"
    assert "FeNi-disordered" in str(info.value)


def test_unknown_element_is_named():
    from pymatgen.core import DummySpecies, Lattice, Structure

    structure = Structure(Lattice.cubic(3.0), [DummySpecies("X"), "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InvalidStructureError) as info:
        to_crystal(structure, "with-dummy")
    message = str(info.value)
    assert "with-dummy" in message
    assert "unknown element X" in message  # not a meaningless atomic number


def test_unknown_element_in_ase_atoms():
    from ase import Atoms

    atoms = Atoms("XCu", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=3.0 * np.eye(3), pbc=True)
    with pytest.raises(InvalidStructureError, match="atomic numbers \\[0\\]") as info:
        to_crystal(atoms, "ase-x")
    assert info.value.structure_id == "ase-x"


def test_noble_gas_only_is_rejected_but_mixed_is_fine():
    from ase.build import bulk

    with pytest.raises(InvalidStructureError, match="noble-gas") as info:
        to_crystal(bulk("Ar", "fcc", a=5.26), "solid-argon")
    assert info.value.structure_id == "solid-argon"
    xenon_fluoride = crystal(
        "XeF2", np.diag([4.3, 4.3, 7.0]), [[0, 0, 0], [0, 0, 0.28], [0, 0, 0.72]], [54, 9, 9]
    )
    assert to_crystal(xenon_fluoride).num_atoms == 3


@pytest.mark.parametrize(
    "bad, reason",
    [
        (crystal("empty", np.eye(3), np.zeros((0, 3)), []), "no atoms"),
        (crystal("nan-coords", 3 * np.eye(3), [[np.nan, 0, 0]], [29]), "non-finite"),
        (crystal("flat", np.diag([3.0, 3.0, 0.0]), [[0, 0, 0]], [29]), "degenerate cell"),
        (crystal("heavy", 3 * np.eye(3), [[0, 0, 0]], [101]), "outside the supported range"),
        (crystal("zero", 3 * np.eye(3), [[0, 0, 0]], [0]), "outside the supported range"),
    ],
)
def test_validation_errors_name_the_structure(bad, reason):
    with pytest.raises(InvalidStructureError, match=reason) as info:
        to_crystal(bad)
    assert info.value.structure_id == bad.id
    assert repr(bad.id) in str(info.value)


def test_non_periodic_and_non_structures_are_rejected():
    from ase import Atoms
    from pymatgen.core import Molecule

    with pytest.raises(InvalidStructureError, match="not periodic"):
        to_crystal(
            Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]], cell=5 * np.eye(3), pbc=[True, True, False]),
            "slab",
        )
    with pytest.raises(InvalidStructureError, match="molecule"):
        to_crystal(Molecule(["H", "H"], [[0, 0, 0], [0.74, 0, 0]]), "H2")
    with pytest.raises(InvalidStructureError, match="not a structure"):
        to_crystal(42, "answer")


def test_files_missing_or_unreadable(tmp_path):
    with pytest.raises(InvalidStructureError, match="does not exist") as info:
        read_structure_file(tmp_path / "nothing.cif")
    assert info.value.structure_id == "nothing"
    garbage = tmp_path / "garbage.cif"
    garbage.write_text("this is not a CIF file\n")
    with pytest.raises(InvalidStructureError, match="unreadable") as info:
        read_structure_file(garbage)
    assert info.value.structure_id == "garbage"


def test_poscar_from_the_real_data(jarvis_dir):
    c = to_crystal(jarvis_dir / "POSCAR-JVASP-1372.vasp")
    assert isinstance(c, Crystal)
    assert c.id == "POSCAR-JVASP-1372"
    assert c.num_atoms == 2 and c.lattice.shape == (3, 3)
    with pytest.raises(InvalidStructureError, match="noble-gas"):
        to_crystal(jarvis_dir / "POSCAR-JVASP-21210.vasp")


def test_rocksalt_builder_is_valid():
    c = to_crystal(rocksalt_primitive())
    assert c.num_atoms == 2
