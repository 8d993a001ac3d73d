"""Predictions with a pretrained ensemble through AiiDA: the calcfunction, the ``cgcnn.predict``
CalcJob on localhost (the real ``aiida-cgcnn`` command), and the provenance query."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner

from aiida_cgcnn.calculations.functions import dataset_from_structures, predict_structures
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.cli.verdi import model_group
from aiida_cgcnn.data.pretrained import import_pretrained
from aiida_cgcnn.ensemble import Ensemble, OutOfDomainWarning
from aiida_cgcnn.provenance import find_predictions, list_models

from .conftest import perovskite

# SrTiO3, BaZrO3-like, and Pu in place of Sr: Pu is absent from the training data
CRYSTALS = {
    "srtio3": ("Sr", "Ti", "O", 3.9),
    "bazro3": ("Ba", "Zr", "O", 4.2),
    "putio3": ("Pu", "Ti", "O", 3.9),
}


@pytest.fixture
def ensemble_node(aiida_profile, installed_model):
    return import_pretrained(installed_model)


@pytest.fixture
def perovskites(aiida_profile):
    return {
        key: orm.StructureData(pymatgen=perovskite(a, b, x, lattice)).store()
        for key, (a, b, x, lattice) in CRYSTALS.items()
    }


@pytest.fixture
def reference(installed_model, perovskites):
    """``Ensemble.predict`` of the shipped model on the same structures, in CRYSTALS order."""
    with pytest.warns(OutOfDomainWarning, match="Pu"):
        return Ensemble.pretrained(installed_model).predict(
            [s.get_ase() for s in perovskites.values()], ids=list(perovskites)
        )


def test_calcfunction_and_calcjob_give_the_ensemble_mean_std_and_flags(
    cgcnn_code, ensemble_node, perovskites, reference
):
    target = ensemble_node.targets[0]
    unit = ensemble_node.units[0]

    # in-process, recorded
    with pytest.warns(OutOfDomainWarning):
        outputs = predict_structures(model=ensemble_node, **perovskites)
    for k, key in enumerate(CRYSTALS):
        record = outputs[key].get_dict()
        assert record["values"][target] == pytest.approx(reference.mean[k, 0], rel=1e-6)
        assert record["std"][target] == pytest.approx(reference.std[k, 0], rel=1e-6)
        assert record["units"] == {target: unit}
        assert record["basis"] == {target: ensemble_node.basis[0]}
        assert record["basis_atoms"] == record["cell_atoms"] == 5
        assert record["model"] == ensemble_node.uuid and record["model_label"] == ensemble_node.model_label
        assert record["structure"] == perovskites[key].uuid
        assert bool(record["out_of_domain"]) == (key == "putio3")
    assert "Pu" in outputs["putio3"]["out_of_domain"]

    # on a computer, through the command
    # the heats of formation are unknown and AiiDA stores no NaN: a dummy column the predictions ignore
    dataset = dataset_from_structures(list(perovskites.values()), [0.0] * 3, ["unknown"], [""])
    builder = PredictCalculation.get_builder()
    builder.code = cgcnn_code
    builder.model = ensemble_node
    builder.dataset = dataset
    builder.metadata.options.max_wallclock_seconds = 1800
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    predictions = results["predictions"]
    order = [perovskites[key].uuid for key in CRYSTALS]
    assert list(predictions.get_array("ids")) == order
    np.testing.assert_allclose(predictions.get_array("values"), reference.mean, rtol=1e-6)
    np.testing.assert_allclose(predictions.get_array("std"), reference.std, rtol=1e-6)
    assert predictions.get_array("out_of_domain").tolist() == [False, False, True]
    assert predictions.base.attributes.get("units") == [unit]
    assert predictions.base.attributes.get("model") == ensemble_node.model_label
    assert results["n_out_of_domain"].value == 1
    assert list(results["out_of_domain"].get_dict()) == [perovskites["putio3"].uuid]
    assert "Pu" in results["out_of_domain"][perovskites["putio3"].uuid]
    assert results["skipped"].get_dict() == {}
    # the ensemble path keeps no copy of the dataset: its success does not say the computer has one
    from aiida_cgcnn.calculations.remote_cache import remote_dataset_available

    assert not remote_dataset_available(dataset, node.computer)

    # both are found, labelled with the pretrained model, with std and the flag
    for key, k in (("srtio3", 0), ("putio3", 2)):
        records = find_predictions(perovskites[key])
        assert sorted(r.process_type for r in records) == [
            "aiida.calculations:cgcnn.predict",
            "aiida_cgcnn.calculations.functions.predict.predict_structures",
        ]
        for record in records:
            assert record.model == ensemble_node.model_label
            assert record.model.startswith(f"pretrained {ensemble_node.name} v{ensemble_node.version}, ")
            assert record.model_uuid == ensemble_node.uuid
            assert record.values[target] == pytest.approx(reference.mean[k, 0], rel=1e-6)
            assert record.std[target] == pytest.approx(reference.std[k, 0], rel=1e-6)
            assert record.units == {target: unit}
            assert bool(record.out_of_domain) == (key == "putio3")

    # and the commands show the label
    runner = CliRunner()
    shown = runner.invoke(model_group, ["predictions", str(perovskites["putio3"].pk)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count(ensemble_node.model_label) == 2 and "OUT OF DOMAIN" in shown.output
    as_json = json.loads(
        runner.invoke(model_group, ["predictions", perovskites["srtio3"].uuid, "--json"]).output
    )
    assert {r["out_of_domain"] for r in as_json} == {""}
    listed = runner.invoke(model_group, ["list"])
    assert listed.exit_code == 0 and ensemble_node.model_label in listed.output
    row = next(r for r in list_models() if r["uuid"] == ensemble_node.uuid)
    assert row["test"][target]["mae"] == pytest.approx(ensemble_node.metrics[target]["mae"])
