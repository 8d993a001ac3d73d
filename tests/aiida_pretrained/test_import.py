"""Importing a shipped ensemble: one node per profile, with its provenance; altered files refused."""

from __future__ import annotations

import json
import shutil

import pytest
from aiida import orm

from aiida_cgcnn.data.ensemble import EnsembleData
from aiida_cgcnn.data.pretrained import GROUP_LABEL, import_pretrained
from aiida_cgcnn.errors import CheckpointError
from aiida_cgcnn.pretrained.registry import MODELS_DIR, card, model_label


def _count(cls) -> int:
    return orm.QueryBuilder().append(cls).count()


def test_import_is_idempotent_and_records_where_the_model_came_from(aiida_profile, installed_model, tmp_path):
    entry = card(installed_model)
    node = import_pretrained(installed_model)
    assert node.is_stored and isinstance(node, EnsembleData)
    counts = (_count(orm.Node), _count(orm.Group))
    again = import_pretrained(installed_model)
    assert again.pk == node.pk
    assert (_count(orm.Node), _count(orm.Group)) == counts

    # queryable facts
    assert node.base.attributes.get("label") == model_label(entry) == node.label
    assert node.targets == [t["name"] for t in entry["targets"]]
    assert node.units == [t["unit"] for t in entry["targets"]]
    assert node.base.attributes.get("members") == len(entry["files"]) == entry["members"] >= 5
    assert node.member_sha256 == [f["sha256"] for f in entry["files"]]
    assert node.base.attributes.get("data_sha256") == entry["data"]["sha256"]
    assert node.base.attributes.get("source")["functional"] == entry["source"]["functional"]
    target = entry["targets"][0]["name"]
    assert node.metrics[target]["mae"] == pytest.approx(entry["metrics"]["targets"][target]["mae"])
    assert "coverage_1sigma" in node.metrics[target]
    found = orm.QueryBuilder().append(EnsembleData, filters={"attributes.sha256": node.sha256}).count()
    assert found == 1
    assert node.pk in [n.pk for n in orm.load_group(GROUP_LABEL).nodes]

    # provenance: the creator has the training data (with the source file's sha256), recipe, metrics
    creator = node.creator
    assert creator.base.attributes.get("function_name") == "pretrained_model"
    inputs = {link.link_label: link.node for link in creator.base.links.get_incoming().all()}
    data = inputs["training_data"].get_dict()
    assert data["source_sha256"] == entry["data"]["sha256"]
    assert data["dataset_sha256"] == entry["data"]["dataset_sha256"]
    assert data["licence"] == entry["source"]["licence"]
    assert inputs["training_data"].label.endswith("training data")
    assert inputs["recipe"]["member_sha256"] == node.member_sha256
    assert inputs["recipe"]["name"] == installed_model
    measured = entry["metrics"]["targets"][target]["mae"]
    assert inputs["metrics"]["targets"][target]["mae"] == pytest.approx(measured)

    # the ensemble of the node predicts as the shipped one
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_cgcnn.ensemble import Ensemble

    from .conftest import perovskite

    ours = node.get_ensemble().predict([perovskite()], ids=["SrTiO3"])
    shipped = Ensemble.pretrained(installed_model).predict([perovskite()], ids=["SrTiO3"])
    assert ours.mean.tolist() == shipped.mean.tolist() and ours.std.tolist() == shipped.std.tolist()
    atoms = AseAtomsAdaptor.get_atoms(perovskite())
    from aiida_cgcnn.ase import CGCNNCalculator

    atoms.calc = CGCNNCalculator(model=node)
    assert atoms.calc.get_property("heat_of_formation", atoms) == pytest.approx(
        float(shipped.mean[0, 0]), rel=1e-6
    )
    assert atoms.calc.get_property("heat_of_formation_std", atoms) == pytest.approx(
        float(shipped.std[0, 0]), rel=1e-6
    )
    assert (
        Ensemble.from_directory(node.export(tmp_path / "exported"))
        .predict([perovskite()], ids=["SrTiO3"])
        .mean.tolist()
        == shipped.mean.tolist()
    )


def test_an_altered_member_is_refused(aiida_profile, installed_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / installed_model, folder)
    member = folder / json.loads((folder / "card.json").read_text())["files"][1]["path"]
    content = bytearray(member.read_bytes())
    content[-100] ^= 0xFF
    member.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="does not match the sha256"):
        EnsembleData(folder=folder)

    # a card whose sha256 fits an invalid file: the file is refused when loaded
    entry = json.loads((folder / "card.json").read_text())
    member.write_bytes(b"not a checkpoint")
    import hashlib

    entry["files"][1]["sha256"] = hashlib.sha256(b"not a checkpoint").hexdigest()
    (folder / "card.json").write_text(json.dumps(entry))
    with pytest.raises(CheckpointError, match="not a loadable"):
        EnsembleData(folder=folder)
    with pytest.raises(ValueError, match="made from a model folder"):
        EnsembleData().store()


def test_calculator_records_ensemble_predictions(aiida_profile):
    """``CGCNNCalculator(model=node, record=True)``: the same numbers as without recording, and the
    prediction is found in the graph with the ensemble's label."""
    from aiida_cgcnn.ase import CGCNNCalculator
    from aiida_cgcnn.provenance import find_predictions
    from tests.builders import perovskite

    atoms = perovskite().to_ase_atoms()
    node = import_pretrained("perovskite-formation")
    recorded = CGCNNCalculator(model=node, record=True)
    plain = CGCNNCalculator(model="perovskite-formation")
    for prop in ("heat_of_formation", "heat_of_formation_std", "heat_of_formation_per_atom"):
        assert recorded.get_property(prop, atoms) == pytest.approx(plain.get_property(prop, atoms), rel=1e-9)
    (structure,) = recorded.recorded_structures
    (record,) = find_predictions(structure)
    assert record.model == node.model_label and record.model_uuid == node.uuid
    assert record.values["heat_all"] == pytest.approx(
        plain.get_property("heat_of_formation", atoms), rel=1e-9
    )
    with pytest.raises(ValueError, match="import_pretrained"):
        CGCNNCalculator(model="perovskite-formation", record=True)
