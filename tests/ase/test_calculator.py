"""The ASE calculator: conventions, agreement with the command line, site contributions, ensembles, errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError

from aiida_cgcnn.ase import CGCNNCalculator, property_name
from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.errors import InvalidStructureError
from aiida_cgcnn.predict import read_predictions_csv
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL as SMALL


@pytest.fixture(scope="module")
def alloys():
    return emt_alloys(48, seed=11)


def _train(tmp_path_factory, alloys, name, pooling="mean", seed=0, two_targets=False):
    structures, energies = alloys
    targets = energies[:, None]
    names, units = ["emt_energy"], ["eV/atom"]
    if two_targets:
        volumes = np.array([a.get_volume() / len(a) for a in structures])
        targets = np.column_stack([energies, volumes])
        names, units = ["emt_energy", "volume_per_atom"], ["eV/atom", "Å^3/atom"]
    dataset, _ = CrystalDataset.from_structures(structures, targets, target_names=names, units=units)
    out = tmp_path_factory.mktemp(name)
    result = Trainer(
        dataset,
        out,
        model_config={**SMALL, "pooling": pooling},
        train_config={"epochs": 3, "batch_size": 8, "seed": seed},
        progress=False,
    ).fit()
    return result.best_checkpoint


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory, alloys):
    return _train(tmp_path_factory, alloys, "mean")


@pytest.fixture(scope="module")
def other_mean_model(tmp_path_factory, alloys):
    return _train(tmp_path_factory, alloys, "mean2", seed=5)


@pytest.fixture(scope="module")
def site_model(tmp_path_factory, alloys):
    return _train(tmp_path_factory, alloys, "site", pooling="site")


@pytest.fixture(scope="module")
def sum_model(tmp_path_factory, alloys):
    return _train(tmp_path_factory, alloys, "sum", pooling="sum", two_targets=True)


def test_ase_conventions(mean_model, alloys):
    atoms = alloys[0][0].copy()
    calc = CGCNNCalculator(mean_model)
    assert calc.implemented_properties == ["emt_energy"]
    assert calc.units == {"emt_energy": "eV/atom"}
    atoms.calc = calc
    value = atoms.calc.get_property("emt_energy", atoms)
    assert np.isfinite(value)
    # unchanged atoms are not recomputed
    assert calc.check_state(atoms) == []
    calc.results["emt_energy"] = 123.0
    assert atoms.calc.get_property("emt_energy", atoms) == 123.0
    # changed atoms are
    atoms.positions[0] += 0.05
    assert "positions" in calc.check_state(atoms)
    moved = atoms.calc.get_property("emt_energy", atoms)
    assert moved != 123.0 and np.isfinite(moved)
    calc.reset()
    assert calc.results == {}
    assert atoms.calc.get_property("emt_energy", atoms) == pytest.approx(moved)
    # no calculation when asked not to
    calc.reset()
    assert calc.get_property("emt_energy", atoms, allow_calculation=False) is None


def test_same_values_as_the_command_line(mean_model, alloys, tmp_path):
    structures = alloys[0][:6]
    paths = []
    for k, atoms in enumerate(structures):
        path = tmp_path / f"s{k}.cif"
        atoms.write(path)
        paths.append(str(path))
    output = tmp_path / "predictions.csv"
    executable = Path(sys.executable).parent / "aiida-cgcnn"
    subprocess.run(
        [str(executable), "predict", str(mean_model), *paths, "-o", str(output)],
        check=True,
        capture_output=True,
    )
    cli = [row["emt_energy_pred"] for row in read_predictions_csv(output)[1]]
    calc = CGCNNCalculator(mean_model)
    one_by_one = []
    for path in paths:  # the same files, read by ASE, one structure at a time
        from ase.io import read

        one_by_one.append(calc.get_property("emt_energy", read(path)))
    np.testing.assert_allclose(one_by_one, cli, rtol=1e-5)
    batched = calc.predict([read(p) for p in paths])["emt_energy"]
    np.testing.assert_allclose(batched, cli, rtol=1e-5)


def test_site_contributions_average_or_sum_to_the_prediction(site_model, sum_model, alloys):
    atoms = alloys[0][3]
    calc = CGCNNCalculator(site_model)
    assert "site_contributions" in calc.implemented_properties
    sites = calc.get_property("site_contributions", atoms)
    assert sites.shape == (len(atoms),)
    assert np.mean(sites) == pytest.approx(calc.get_property("emt_energy", atoms), rel=1e-5)

    calc = CGCNNCalculator(sum_model)
    assert set(calc.implemented_properties) >= {
        "emt_energy",
        "volume_per_atom",
        "emt_energy_site_contributions",
    }
    assert "site_contributions" not in calc.implemented_properties  # two per-site targets: named ones
    sites = calc.get_property("volume_per_atom_site_contributions", atoms)
    assert np.sum(sites) == pytest.approx(calc.get_property("volume_per_atom", atoms), rel=1e-5)


def test_ensemble_mean_and_standard_deviation(mean_model, other_mean_model, alloys):
    atoms = alloys[0][5]
    single = [CGCNNCalculator(m).get_property("emt_energy", atoms) for m in (mean_model, other_mean_model)]
    calc = CGCNNCalculator([mean_model, other_mean_model])
    assert "emt_energy_std" in calc.implemented_properties
    assert calc.get_property("emt_energy", atoms) == pytest.approx(np.mean(single), rel=1e-6)
    assert calc.get_property("emt_energy_std", atoms) == pytest.approx(np.std(single), rel=1e-6)
    assert calc.get_property("emt_energy_std", atoms) > 0
    batch = calc.predict(alloys[0][:4])
    assert batch["emt_energy"].shape == (4,) and batch["emt_energy_std"].shape == (4,)


def test_clear_errors(mean_model):
    calc = CGCNNCalculator(mean_model)
    with pytest.raises(PropertyNotImplementedError, match=r"'heat_capacity' is not predicted.*emt_energy"):
        calc.get_property("heat_capacity", bulk("Cu"))
    with pytest.raises(PropertyNotImplementedError):
        calc.get_property("energy", bulk("Cu"))
    no_cell = bulk("Cu")
    no_cell.pbc = False
    with pytest.raises(InvalidStructureError, match="not periodic"):
        calc.get_property("emt_energy", no_cell)
    fermium_plus = bulk("Cu")
    fermium_plus.numbers[0] = 110  # darmstadtium: no atom features
    with pytest.raises(InvalidStructureError, match="outside the supported range"):
        calc.get_property("emt_energy", fermium_plus)
    with pytest.raises(ValueError, match="ModelData"):
        CGCNNCalculator(mean_model, record=True)


def test_property_names():
    assert property_name("U") == "phonon_internal_energy"
    assert property_name("Cv") == "heat_capacity"
    assert property_name("formation_energy_per_atom") == "formation_energy_per_atom"
    assert property_name("optb88vdw_bandgap") == "band_gap"
    assert property_name("Shear Modulus (GPa)") == "shear_modulus_gpa"
