"""``ensemble_from_models``: trained ``ModelData`` nodes as one ``EnsembleData`` whose predictions
through ``cgcnn.predict`` (the real command on localhost) are the members' mean and spread."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.functions.ensemble import ensemble_from_models
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.data.ensemble import EnsembleData
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.training.dataset import CrystalDataset

from .conftest import train_member


def test_the_ensemble_predicts_the_members_mean_and_spread(cgcnn_code, members, dataset_node, structures):
    ensemble, call = run_get_node(ensemble_from_models, **members)
    assert isinstance(ensemble, EnsembleData) and ensemble.is_stored
    assert {link.link_label for link in call.base.links.get_incoming().all()} == {"m0", "m1"}
    assert ensemble.targets == ["emt_energy"] and ensemble.units == ["eV/atom"]
    assert ensemble.basis == ["intensive"]
    assert ensemble.base.attributes.get("std_scale") == [1.0]  # the raw spread: nothing calibrated it
    assert ensemble.base.attributes.get("members") == 2
    card = ensemble.get_card()
    assert card["member_models"] == {"m0": members["m0"].uuid, "m1": members["m1"].uuid}
    # the members' sha256 are those of the ModelData files: the card's members are those models
    assert ensemble.member_sha256 == [members["m0"].sha256, members["m1"].sha256]
    # the domain comes from the training dataset the members' checkpoints name
    elements = sorted({s for atoms in dataset_node.get_dataset().crystals() for s in atoms.to_ase().symbols})
    assert ensemble.base.attributes.get("domain") == {"elements": elements, "num_atoms": [8, 8]}

    builder = PredictCalculation.get_builder()
    builder.code = cgcnn_code
    builder.model = ensemble
    builder.dataset = dataset_node
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    predictions = results["predictions"]
    assert list(predictions.get_array("ids")) == [s.uuid for s in structures]
    atoms = [s.get_ase() for s in structures]
    each = np.stack([m.get_predictor().predict(atoms).values for m in members.values()])  # (M, N, 1)
    np.testing.assert_allclose(predictions.get_array("values"), each.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(predictions.get_array("std"), each.std(axis=0, ddof=0), rtol=1e-5, atol=1e-7)
    assert np.all(predictions.get_array("std") > 0)  # two seeds disagree
    assert results["n_out_of_domain"].value == 0


def test_settings_give_basis_scale_and_name(members):
    settings = orm.Dict(
        {"name": "alloys", "std_scale": [2.0], "basis": "primitive cell", "functional": "EMT"}
    )
    ensemble = ensemble_from_models(settings=settings, **members)
    assert ensemble.name == "alloys" and ensemble.basis == ["primitive cell"]
    assert ensemble.base.attributes.get("std_scale") == [2.0]
    assert ensemble.model_label.startswith("ensemble alloys v1, trained on CrystalDatasetData<")
    assert ensemble.model_label.endswith("(EMT)")
    direct = ensemble.get_ensemble()
    assert direct.std_scale.tolist() == [2.0] and direct.basis == ["primitive cell"]


def test_members_of_other_targets_or_bad_settings_are_refused_by_name(members, alloy_data, tmp_path):
    atoms, energies = alloy_data
    other, _ = CrystalDataset.from_structures(
        atoms[:12], energies[:12], ids=[str(k) for k in range(12)], target_names=["emt_energy"], units=["eV"]
    )
    wrong = ModelData.get_or_create(train_member(other, tmp_path / "ev", seed=3))
    with pytest.raises(
        ValueError, match=rf"member 'zz' \(ModelData<{wrong.pk}>\) predicts \[\('emt_energy', 'eV'\)\]"
    ):
        ensemble_from_models(**members, zz=wrong)
    with pytest.raises(ValueError, match="unknown ensemble settings"):
        ensemble_from_models(settings=orm.Dict({"scale": [1.0]}), **members)
    with pytest.raises(ValueError, match="use one of intensive"):
        ensemble_from_models(settings=orm.Dict({"basis": "per cell"}), **members)
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_from_models()
