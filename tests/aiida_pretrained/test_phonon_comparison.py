"""``cgcnn.phonon_comparison`` with an ensemble of U and Cv: ``phonons-300K`` when installed, else an
ensemble of two tiny freshly trained members with a card of its own."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_cgcnn.data.ensemble import EnsembleData
from aiida_cgcnn.pretrained.registry import available, sha256_file
from aiida_cgcnn.provenance import find_model_predictions, find_predictions
from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain
from tests.aiida_phonons.conftest import _train

EMT = {"calculator": "ase.calculators.emt.EMT"}
SMALL = {"supercell_matrix": [3, 3, 3], "mesh": 10.0, "gamma_acoustic": "exclude"}
UNITS = {"U": "kJ/mol", "Cv": "J/(K mol)"}


def _ensemble_folder(root, basis: str = "primitive cell", units=UNITS):
    """A model folder: card and two members of U and Cv per primitive cell, trained on fcc metals."""
    root.mkdir()
    members = [
        _train(root / f"train-{seed}", list(units), list(units.values()), seed=seed) for seed in (0, 1)
    ]
    files = []
    for k, path in enumerate(members):
        target = root / f"member-{k}.pt"
        target.write_bytes(path.read_bytes())
        files.append({"path": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size})
    card = {
        "name": "test-phonons",
        "version": 1,
        "title": "U and Cv of fcc metals (made-up targets, for tests)",
        "source": {"path": "made-up/fcc.csv", "functional": "none", "description": "test", "licence": "none"},
        "targets": [{"name": name, "unit": unit, "basis": basis} for name, unit in units.items()],
        "files": files,
        "std_scale": [1.5, 1.5],
        "domain": {"elements": ["Cu", "Al", "Ni", "Ag", "Au", "Pd", "Pt"], "num_atoms": [1, 1]},
        "model": {"architecture": "cgcnn", "pooling": "mean"},
    }
    (root / "card.json").write_text(json.dumps(card))
    return root


@pytest.fixture
def phonon_ensemble(aiida_profile, tmp_path):
    if "phonons-300K" in available():
        from aiida_cgcnn.data.pretrained import import_pretrained

        return import_pretrained("phonons-300K")
    return EnsembleData(folder=_ensemble_folder(tmp_path / "ensemble")).store()


def _builder(model, crystals):
    builder = PhononComparisonWorkChain.get_builder()
    builder.structures = {k: orm.StructureData(ase=v) for k, v in crystals.items()}
    builder.model = model
    builder.reference.engine = orm.Dict(EMT)
    builder.reference.phonopy = orm.Dict(SMALL)
    builder.reference.temperatures = orm.List([300.0])
    return builder


def test_an_ensemble_of_u_and_cv_is_compared_with_its_spread(phonon_ensemble):
    crystals = {"Cu": bulk("Cu", "fcc", a=3.59), "Al": bulk("Al", "fcc", a=4.05)}
    results, node = run_get_node(_builder(phonon_ensemble, crystals))
    assert node.is_finished_ok, node.exit_message
    comparison = results["comparison"].get_dict()
    assert comparison["compared"] == ["Al", "Cu"]
    assert comparison["models"] == {"model": phonon_ensemble.uuid}

    # the predictions are the ensemble's mean and calibrated spread for phonopy's primitive cells
    primitives = [results["primitive_structures"][label].get_ase() for label in ("Al", "Cu")]
    direct = phonon_ensemble.get_ensemble().predict(primitives, ids=["Al", "Cu"], warn=False)
    columns = {name: phonon_ensemble.targets.index(name) for name in ("U", "Cv")}
    for k, label in enumerate(("Al", "Cu")):
        prediction = results["predictions"][label].get_dict()
        for name, key in (("U", "U_kJmol"), ("Cv", "Cv_JKmol")):
            assert prediction[key] == pytest.approx(float(direct.mean[k, columns[name]]), rel=1e-6)
            assert prediction[f"{key}_std"] == pytest.approx(float(direct.std[k, columns[name]]), rel=1e-6)
            assert prediction[f"{key}_std"] > 0
        assert comparison["per_structure"][label]["U_predicted"] == prediction["U_kJmol"]

        # the work chain's predictions are found from the structure the user gave (they are made for
        # its phonopy primitive cell), in the one record shape, with the ensemble's spread
        (record,) = find_predictions(node.inputs.structures[label])
        assert record.structure_uuid == results["primitive_structures"][label].uuid
        assert record.values == {"U": prediction["U_kJmol"], "Cv": prediction["Cv_JKmol"]}
        assert record.units == UNITS and record.std == {
            "U": prediction["U_kJmol_std"],
            "Cv": prediction["Cv_JKmol_std"],
        }
        assert record.model_uuid == phonon_ensemble.uuid and record.out_of_domain == ""
    made = find_model_predictions(phonon_ensemble)
    assert {r.structure_uuid for r in made} >= {results["primitive_structures"][x].uuid for x in ("Al", "Cu")}


def test_an_intensive_or_wrongly_united_ensemble_is_refused(aiida_profile, tmp_path):
    intensive = EnsembleData(folder=_ensemble_folder(tmp_path / "intensive", basis="intensive")).store()
    with pytest.raises(ValueError, match="is intensive"):
        run_get_node(_builder(intensive, {"Cu": bulk("Cu", "fcc", a=3.59)}))
    # units are checked as for ModelData
    in_ev = EnsembleData(folder=_ensemble_folder(tmp_path / "ev", units={**UNITS, "U": "eV"})).store()
    with pytest.raises(ValueError, match="unit 'eV'"):
        run_get_node(_builder(in_ev, {"Cu": bulk("Cu", "fcc", a=3.59)}))
    # a card whose units disagree with its members' is refused
    folder = tmp_path / "ev"
    card = json.loads((folder / "card.json").read_text())
    card["targets"][0]["unit"] = "kJ/mol"
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="the card lists"):
        EnsembleData(folder=folder)
