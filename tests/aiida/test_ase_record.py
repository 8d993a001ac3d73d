"""The ASE calculator with ``record=True``: a script's predictions land in the provenance graph."""

import numpy as np
import pytest
from aiida import orm

from aiida_cgcnn.ase import CGCNNCalculator
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.data.prediction import PredictionData
from aiida_cgcnn.provenance import find_predictions
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer


def _by(model: ModelData, structure: orm.StructureData) -> list:
    return [r for r in find_predictions(structure) if r.model_uuid == model.uuid]


def _count(cls) -> int:
    return orm.QueryBuilder().append(cls).count()


def test_recorded_predictions_are_found_by_the_provenance_query(aiida_profile, alloy_data, tmp_path):
    structures, energies = alloy_data
    dataset, _ = CrystalDataset.from_structures(
        structures, energies, target_names=["emt_energy"], units=["eV/atom"]
    )
    result = Trainer(
        dataset,
        tmp_path,
        model_config={"atom_fea_len": 16, "n_conv": 2, "pooling": "site"},
        train_config={"epochs": 2, "batch_size": 8},
        progress=False,
    ).fit()
    model = ModelData.get_or_create(result.best_checkpoint)
    plain = CGCNNCalculator(model)
    calc = CGCNNCalculator(model, record=True)
    atoms = structures[2].copy()
    value = calc.get_property("emt_energy", atoms)
    assert value == pytest.approx(plain.get_property("emt_energy", atoms), rel=1e-6)
    sites = calc.get_property("site_contributions", atoms)
    assert np.mean(sites) == pytest.approx(value, rel=1e-5)
    (structure,) = calc.recorded_structures
    # the structure is any stored one of the same content (other tests store these alloys too)
    (record,) = _by(model, structure)
    assert record.values["emt_energy"] == pytest.approx(value, rel=1e-9)
    assert record.model_uuid == model.uuid and record.units == {"emt_energy": "eV/atom"}

    # the same Atoms again, in a new calculator: the stored structure is reused, the prediction recorded
    n_structures, n_records = _count(orm.StructureData), _count(PredictionData)
    again = CGCNNCalculator(model, record=True)
    assert again.get_property("emt_energy", atoms.copy()) == pytest.approx(value, rel=1e-9)
    assert again.recorded_structures[0].uuid == structure.uuid
    assert _count(orm.StructureData) == n_structures and _count(PredictionData) == n_records + 1
    assert len(_by(model, structure)) == 2

    batch = calc.predict(structures[:3])
    assert len(calc.recorded_structures) == 3
    for node, predicted in zip(calc.recorded_structures, batch["emt_energy"], strict=True):
        assert _by(model, node)[-1].values["emt_energy"] == pytest.approx(predicted, rel=1e-9)
    # a batch holding one crystal twice records it once per position, on one structure
    twice = calc.predict([structures[5], structures[5].copy()])
    assert calc.recorded_structures[0].uuid == calc.recorded_structures[1].uuid
    assert twice["emt_energy"][0] == pytest.approx(twice["emt_energy"][1], rel=1e-12)
