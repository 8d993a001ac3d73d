"""The README's AiiDA demo and the provenance commands, on the temporary profile."""

import json

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk
from click.testing import CliRunner

from aiida_cgcnn.cli.verdi import model_group
from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.ensemble import Ensemble
from aiida_cgcnn.pretrained.registry import card, model_label
from aiida_cgcnn.workflows.demo import run_aiida_demo
from tests.aiida.tables import table_rows


def test_aiida_demo_and_provenance_commands(aiida_profile, aiida_localhost, tmp_path):
    aiida_localhost.set_minimum_job_poll_interval(0.2)
    lines = []
    pks = run_aiida_demo(n_structures=30, epochs=2, echo=lines.append, computer_label=aiida_localhost.label)
    text = "\n".join(lines)
    assert "(CalcJob)" in text and "(calcfunction)" in text
    # step 5: the shipped phonon ensemble, conventional cells reduced, PuO2 flagged, provenance found
    rows = {
        line.split()[0]: line for line in lines[lines.index(next(x for x in lines if "crystal " in x)) + 1 :]
    }
    assert rows["Cl4Na4"].split()[1:4] == ["8", "->", "2"] and "OUT OF DOMAIN" not in rows["Cl4Na4"]
    assert "OUT OF DOMAIN: elements never seen in training: Pu" in rows["O8Pu4"]
    ensemble = orm.load_node(pks["pretrained"])
    assert "find_predictions(NaCl)" in text and ensemble.model_label in text
    nacl = bulk("NaCl", "rocksalt", a=5.640, cubic=True)
    expected = Ensemble.pretrained("phonons-300K").predict([nacl])
    cv, cv_std = float(rows["Cl4Na4"].split()[7]), float(rows["Cl4Na4"].split()[9])
    assert cv == pytest.approx(expected.mean[0, 1], abs=0.006)  # printed with two decimals
    assert cv_std == pytest.approx(expected.std[0, 1], abs=0.006)
    model = orm.load_node(pks["model"])
    _check_demo_values(lines, model, orm.load_node(pks["predict"]), orm.load_node(pks["dataset"]))

    runner = CliRunner()
    result = runner.invoke(model_group, ["list", "--json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert any(r["pk"] == model.pk and r["dataset_pk"] == pks["dataset"] for r in rows)
    # the pretrained ensemble's row as printed: members, pooling, each target's MAE from its card
    entry = card("phonons-300K")
    listed = runner.invoke(model_group, ["list"], catch_exceptions=False).output
    (row,) = [r for r in table_rows(listed) if r["PK"] == [str(ensemble.pk)]]
    assert row["model"] == [f"CGCNN ensemble of {entry['members']} ({entry['model']['pooling']})"]
    assert row["targets"] == [f"{t['name']} [{t['unit']}]" for t in entry["targets"]]
    assert row["test MAE"] == [
        f"{t['name']} {entry['metrics']['targets'][t['name']]['mae']:.4g} {t['unit']}"
        for t in entry["targets"]
    ]
    assert row["epochs"] == ["-"] and row["training data"] == ["see label"]
    assert row["label"] == [model_label(entry)]
    # and its predictions as printed: mean ± calibrated std with units, the out-of-domain flag
    printed = runner.invoke(model_group, ["predictions", str(ensemble.pk)], catch_exceptions=False).output
    made = {orm.load_node(r["structure"][0]).get_formula(): r for r in table_rows(printed)}
    assert {"Cl4Na4", "O8Pu4"} <= set(made) and made["Cl4Na4"]["domain"] == []
    assert made["O8Pu4"]["domain"] == ["OUT OF DOMAIN: elements never seen in training: Pu"]
    targets = [(t["name"], t["unit"]) for t in entry["targets"]]
    assert len(made["Cl4Na4"]["prediction"]) == len(targets)
    for k, ((name, unit), line) in enumerate(zip(targets, made["Cl4Na4"]["prediction"], strict=True)):
        label, equals, mean, plus_minus, std, *printed_unit = line.split()
        assert (label, equals, plus_minus, " ".join(printed_unit)) == (name, "=", "±", unit)
        assert float(mean) == pytest.approx(expected.mean[0, k], rel=1e-5)
        assert float(std) == pytest.approx(expected.std[0, k], rel=0.06)  # two significant digits

    predict = orm.load_node(pks["predict"])
    structure_uuid = str(predict.outputs.predictions.get_array("ids")[0])
    structure = orm.load_node(structure_uuid)
    result = runner.invoke(model_group, ["predictions", str(structure.pk), "--json"], catch_exceptions=False)
    records = json.loads(result.output)
    assert len(records) == 2  # the CalcJob's and the calcfunction's
    assert {r["model_pk"] for r in records} == {model.pk}

    result = runner.invoke(
        model_group, ["export", str(model.pk), str(tmp_path / "m.pt")], catch_exceptions=False
    )
    assert (tmp_path / "m.pt").read_bytes() == model.get_content(mode="rb")
    # every prediction of the model: the calcfunction's one and a row per structure of the CalcJob
    result = runner.invoke(model_group, ["predictions", str(model.pk), "--json"], catch_exceptions=False)
    made = json.loads(result.output)
    assert len(made) == 1 + len(predict.outputs.predictions.get_array("ids"))
    # a node that is neither a structure nor a model is named, with a non-zero exit and no traceback
    result = runner.invoke(model_group, ["predictions", str(predict.pk)])
    assert result.exit_code == 2 and str(predict.pk) in result.output and "Traceback" not in result.output


def _check_demo_values(lines, model, predict, dataset):
    """The printed numbers against the nodes the demo made and the Predictor on the same inputs."""
    test = model.metrics["test"]
    summary = (
        f"   ModelData<{model.pk}>: test MAE {test['mae']:.4f} eV/atom, MAE/MAD {test['mae_over_mad']:.3f}"
    )
    assert summary in lines
    new_atoms, new_energies = emt_alloys(5, seed=12345)
    ids = predict.outputs.predictions.get_array("ids")
    values = predict.outputs.predictions.get_array("values")[:, 0]
    structures = [orm.load_node(uuid) for uuid in ids]
    assert [s.get_formula() for s in structures] == [a.get_chemical_formula() for a in new_atoms]
    local = model.get_predictor().predict([s.get_ase() for s in structures])
    np.testing.assert_allclose(values, local.values[:, 0], rtol=1e-5, atol=1e-6)
    mae = np.mean(np.abs(values - new_energies))
    assert f"   MAE on the unseen alloys: {mae:.4f} eV/atom" in lines
    # step 4: per structure the CalcJob's and the calcfunction's records, EMT and predicted values
    for structure, emt, value in zip(structures, new_energies, values, strict=True):
        printed = [line.split() for line in lines if line.split()[:1] == [f"StructureData<{structure.pk}>"]]
        by_calcjob = [words for words in printed if "(CalcJob)," in words]
        assert len(by_calcjob) == 1
        words = by_calcjob[0]
        assert float(words[words.index("EMT") + 1]) == pytest.approx(emt, abs=6e-5)
        assert float(words[words.index("predicted") + 1]) == pytest.approx(value, abs=6e-5)
        assert words[words.index("trained") + 2] == dataset.uuid[:8]
