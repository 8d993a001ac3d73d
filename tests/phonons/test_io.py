"""Existing phonopy calculations: phonondb's real DFT force sets reproduce its 300 K table; the layouts
(archive, folder, phonopy yaml) read the same; missing or inconsistent input is named."""

from __future__ import annotations

import dataclasses
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ase.io import write
from phonopy.file_IO import write_FORCE_SETS

from aiida_cgcnn.phonons import (
    PhononInputError,
    PhononSettings,
    find_phonopy_calculations,
    phonon_properties,
    produce_force_constants,
    read_phonopy_calculation,
)

from .conftest import EMT_SETTINGS, assert_reproduces_table, emt_phonopy

#: A fast, representative few: with and without BORN, cubic/trigonal/tetragonal, one unstable.
FEW = [
    "materials-id-1000-bate-fm-3m-225",
    "materials-id-10175-kcdf3-pm-3m-221",
    "materials-id-10182-liznp-f-43m-216",
    "materials-id-27801-tlagi2-i4-mcm-140",
    "materials-id-2552-teo3-r-3c-167",
]


def write_phonondb_layout(
    folder: Path,
    atoms,
    settings: PhononSettings = EMT_SETTINGS,
    dim: str = "4 4 4",
    primitive_axis: str | None = None,
    with_forces: bool = True,
) -> Path:
    """An EMT calculation written as phonondb writes its DFT ones."""
    phonon, forces = emt_phonopy(atoms, settings)
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "POSCAR-unitcell", atoms, format="vasp", direct=True)
    conf = f"DIM = {dim}\n" + (f"PRIMITIVE_AXIS = {primitive_axis}\n" if primitive_axis else "")
    (folder / "phonopy.conf").write_text(conf)
    if with_forces:
        phonon.forces = forces
        write_FORCE_SETS(phonon.dataset, filename=str(folder / "FORCE_SETS"))
    return folder


def _archive(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w:xz") as archive:  # phonondb's .tar.lzma files are xz-compressed tars
        archive.add(folder, arcname=f"{folder.name}-20180417")
    return path


def _properties(calculation, settings=EMT_SETTINGS, temperatures=(300.0,)):
    phonon = calculation.to_phonopy(settings)
    produce_force_constants(phonon, settings=settings, name=calculation.name)
    return phonon, phonon_properties(phonon, temperatures, settings)


def _check_against_table(calculation, record):
    phonon, p = _properties(calculation, PhononSettings(mesh=50.0))
    # the same primitive cell as the table (the cell a model sees), with NAC where BORN exists
    np.testing.assert_allclose(phonon.primitive.cell, record["lattice"], atol=1e-6)
    assert list(phonon.primitive.symbols) == record["species"]
    assert p.nac == record["has_born"] and p.n_atoms_primitive == record["natoms"]
    u, cv = p.internal_energy_kjmol[0], p.heat_capacity_jkmol[0]
    assert_reproduces_table(u, cv, p.n_qpoints, record, calculation.name)
    assert p.stable == (record["min_freq_THz"] >= -0.5)
    if not p.stable:  # real imaginary modes are no noise: the same frequency
        assert p.lowest_frequency_thz == pytest.approx(record["min_freq_THz"], rel=1e-6)


@pytest.mark.data
@pytest.mark.parametrize("name", FEW)
def test_phonondb_force_sets_reproduce_the_table(name, phonondb):
    calculation = read_phonopy_calculation(phonondb["archives"][name])
    assert calculation.name == name and calculation.forces is not None
    _check_against_table(calculation, phonondb["table"][name])


@pytest.mark.data
@pytest.mark.slow
def test_all_phonondb_force_sets_reproduce_the_table(phonondb):
    assert len(phonondb["archives"]) >= 20
    for name, path in phonondb["archives"].items():
        _check_against_table(read_phonopy_calculation(path), phonondb["table"][name])


@pytest.fixture(scope="module")
def copper_reference(fcc_metals):
    """EMT Cu straight from the core, with the deterministic Γ treatment."""
    settings = dataclasses.replace(EMT_SETTINGS, gamma_acoustic="exclude")
    phonon, forces = emt_phonopy(fcc_metals["Cu"], settings)
    produce_force_constants(phonon, forces, settings)
    return settings, phonon_properties(phonon, [300.0, 1000.0], settings)


def test_layouts_read_the_same(tmp_path, fcc_metals, copper_reference):
    settings, expected = copper_reference
    folder = write_phonondb_layout(tmp_path / "cu", fcc_metals["Cu"])
    archive = _archive(folder, tmp_path / "materials-id-30-cu-fm-3m-225.tar.lzma")
    calculation = read_phonopy_calculation(folder)
    phonon = calculation.to_phonopy(settings)
    phonon.save(str(tmp_path / "phonopy_params.yaml"))  # forces in the yaml
    for source, name in [
        (folder, "cu"),
        (archive, "materials-id-30-cu-fm-3m-225"),
        (tmp_path / "phonopy_params.yaml", "phonopy_params"),
    ]:
        calc = read_phonopy_calculation(source)
        assert calc.name == name and calc.nac_params is None
        _, p = _properties(calc, settings, [300.0, 1000.0])
        np.testing.assert_allclose(p.internal_energy_kjmol, expected.internal_energy_kjmol, rtol=1e-10)
        np.testing.assert_allclose(p.heat_capacity_jkmol, expected.heat_capacity_jkmol, rtol=1e-10)
    assert {p.name for p in find_phonopy_calculations(tmp_path)} >= {
        "cu",
        archive.name,
        "phonopy_params.yaml",
    }


def test_missing_forces_are_named(tmp_path, fcc_metals):
    folder = write_phonondb_layout(tmp_path / "cu-no-forces", fcc_metals["Cu"], with_forces=False)
    with pytest.raises(PhononInputError, match="cu-no-forces: missing forces: no FORCE_SETS"):
        read_phonopy_calculation(folder)
    archive = _archive(folder, tmp_path / "cu-no-forces.tar.lzma")
    with pytest.raises(PhononInputError, match="cu-no-forces: missing forces"):
        read_phonopy_calculation(archive)


def test_a_supercell_matrix_that_does_not_fit_the_forces_is_named(tmp_path, fcc_metals):
    folder = write_phonondb_layout(tmp_path / "cu-wrong-dim", fcc_metals["Cu"])
    (folder / "phonopy.conf").write_text("DIM = 3 3 3\n")
    with pytest.raises(PhononInputError, match="cu-wrong-dim"):
        read_phonopy_calculation(folder)
    (folder / "phonopy.conf").write_text("PRIMITIVE_AXIS = 0 1/2 1/2 1/2 0 1/2 1/2 1/2 0\n")
    with pytest.raises(PhononInputError, match=r"cu-wrong-dim: phonopy\.conf has no DIM"):
        read_phonopy_calculation(folder)


def test_an_archive_cannot_write_outside_its_folder(tmp_path, fcc_metals):
    folder = write_phonondb_layout(tmp_path / "cu", fcc_metals["Cu"])
    path = tmp_path / "evil.tar.xz"
    with tarfile.open(path, "w:xz") as archive:
        for name in ("POSCAR-unitcell", "phonopy.conf", "FORCE_SETS"):
            archive.add(folder / name, arcname=f"../../escaped/{name}")
    assert read_phonopy_calculation(path).forces is not None
    assert not (tmp_path.parent.parent / "escaped").exists()
