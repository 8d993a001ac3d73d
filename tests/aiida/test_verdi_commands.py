"""``verdi data cgcnn.model|cgcnn.dataset`` and ``aiida-cgcnn provenance`` as a user runs them: the real
executables of this environment on the test profile (passed by name), and in-process for the details."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_cgcnn.calculations.functions import dataset_from_structures, predict_structures
from aiida_cgcnn.cli.verdi import dataset_group, model_group
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer
from tests.aiida.tables import show_fields, table_rows
from tests.builders import SMALL_MODEL

BIN = Path(sys.executable).parent


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture
def recorded(aiida_profile, alloy_data, structures, tmp_path):
    """A model trained on a stored dataset (as on the command line), with predictions recorded."""
    energies = alloy_data[1]
    dataset_node = dataset_from_structures(structures, energies, ["emt_energy"], ["eV/atom"])
    result = Trainer(
        dataset_node.get_dataset(),
        tmp_path / "run",
        model_config={"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16},
        train_config={"epochs": 1, "batch_size": 8},
        progress=False,
    ).fit()
    model = ModelData.get_or_create(result.best_checkpoint)
    predict_structures(model=model, a=structures[0], b=structures[1])
    return model, dataset_node


def test_verdi_and_aiida_cgcnn_commands(aiida_profile, verdi_env, recorded, structures, tmp_path):
    model, dataset = recorded
    env, profile = verdi_env  # the loaded profile, which holds the nodes made here

    listed = _run(str(BIN / "verdi"), "-p", profile, "data", "cgcnn.model", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in table_rows(listed.stdout) if r["PK"] == [str(model.pk)]]
    mae = model.metrics["test"]["mae"]
    assert row["model"] == ["CGCNN (mean)"] and row["targets"] == ["emt_energy [eV/atom]"]
    assert row["test MAE"] == [f"emt_energy {mae:.4g} eV/atom"] and row["epochs"] == ["1"]
    assert row["training data"] == [f"CrystalDatasetData<{dataset.pk}> ({dataset.size} structures)"]
    # the same table from aiida-cgcnn provenance
    again = _run(str(BIN / "aiida-cgcnn"), "provenance", "-p", profile, "list", cwd=tmp_path, env=env)
    assert again.returncode == 0 and again.stdout == listed.stdout, again.stderr

    shown = _run(
        str(BIN / "verdi"),
        "-p",
        profile,
        "data",
        "cgcnn.dataset",
        "show",
        str(dataset.pk),
        cwd=tmp_path,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    fields = show_fields(shown.stdout)
    assert fields["PK"] == str(dataset.pk) and fields["size"] == str(dataset.size)
    assert fields["targets"] == "emt_energy [eV/atom]" and fields["models trained"] == "1"
    assert fields["source structures"] == str(len(structures)) and fields["sha256"] == dataset.sha256

    # an unknown pk: a clear error and a non-zero exit, from both entry points
    for command in (
        [str(BIN / "verdi"), "-p", profile, "data", "cgcnn.model", "predictions", "99999"],
        [str(BIN / "aiida-cgcnn"), "provenance", "-p", profile, "predictions", "99999"],
    ):
        missing = _run(*command, cwd=tmp_path, env=env)
        assert missing.returncode != 0
        assert "99999" in missing.stderr and "Traceback" not in missing.stderr, missing.stderr

    made = _run(
        str(BIN / "aiida-cgcnn"),
        "provenance",
        "-p",
        profile,
        "predictions",
        str(model.pk),
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert sorted(r["structure_uuid"] for r in json.loads(made.stdout)) == sorted(
        [structures[0].uuid, structures[1].uuid]
    )


def test_show_export_and_errors_in_process(aiida_profile, recorded, structures, tmp_path):
    model, dataset = recorded
    runner = CliRunner()
    result = runner.invoke(model_group, ["show", str(model.pk), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["kind"] == "CGCNN" and shown["predictions"] == 2 and shown["epochs"] == 1
    assert shown["training data"] == f"CrystalDatasetData<{dataset.pk}> ({dataset.size} structures)"

    result = runner.invoke(model_group, ["export", model.uuid, str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.pt").read_bytes() == model.get_content(mode="rb")
    result = runner.invoke(dataset_group, ["export", str(dataset.pk), str(tmp_path / "d.npz")])
    assert result.exit_code == 0, result.output
    assert CrystalDataset.load(tmp_path / "d.npz").sha256() == dataset.dataset_sha256

    result = runner.invoke(dataset_group, ["list"])
    assert result.exit_code == 0 and f"{dataset.pk}" in result.output
    line = next(x for x in result.output.splitlines() if x.split()[:1] == [str(dataset.pk)])
    assert line.split()[1] == str(dataset.size) and "emt_energy" in line
    rows = json.loads(runner.invoke(dataset_group, ["list", "--json"]).output)
    assert next(r for r in rows if r["pk"] == dataset.pk)["models"] == 1  # trained on it on the command line

    result = runner.invoke(model_group, ["predictions", str(structures[0].pk)])
    assert result.exit_code == 0 and "emt_energy = " in result.output and "eV/atom" in result.output
    # a node of the wrong type is named as such, not a traceback
    result = runner.invoke(model_group, ["show", str(dataset.pk)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(dataset_group, ["show", str(model.pk)])
    assert result.exit_code == 2 and str(model.pk) in result.output
    assert np.isfinite(float(shown["test MAE"].split()[1]))


def test_text_tables_hold_the_values_of_a_hybrid_model(aiida_profile, alloy_data, structures, tmp_path):
    """The printed tables, not only the exit codes: kind, per-target MAE with its unit, epochs and the
    training dataset of a two-target de-CGCNN, and the values of its predictions."""
    from aiida_cgcnn.data.dataset import CrystalDatasetData
    from aiida_cgcnn.descriptors.hybrid import attach_descriptors

    energies = alloy_data[1]

    def two_targets(names: list[str]) -> CrystalDataset:
        values = np.stack([energies * 8, energies], axis=1)
        two, _ = CrystalDataset.from_structures(
            alloy_data[0], values, target_names=names, units=["eV", "eV/atom"]
        )
        return attach_descriptors(two, "density,vpa")[0]

    # the same content under other target names, stored first: another dataset, never reported as this one's
    renamed = CrystalDatasetData.from_dataset(two_targets(["renamed", "emt_energy"])).store()
    hybrid = two_targets(["E", "emt_energy"])
    dataset = CrystalDatasetData.from_dataset(hybrid).store()
    result = Trainer(
        hybrid,
        tmp_path / "run",
        model_config={**SMALL_MODEL, "pooling": "sum"},
        train_config={"epochs": 2, "batch_size": 8, "seed": 3},
        progress=False,
    ).fit()
    model = ModelData.get_or_create(result.best_checkpoint)
    per_target = result.metrics["test"]["per_target"]
    mae = {name: f"{per_target[name]['mae']:.4g}" for name in ("E", "emt_energy")}
    predict_structures(model=model, a=structures[0], b=structures[1])
    predicted = model.get_predictor().predict([structures[0].get_ase(), structures[1].get_ase()]).values
    runner = CliRunner()

    listed = runner.invoke(model_group, ["list"], catch_exceptions=False).output
    (row,) = [r for r in table_rows(listed) if r["PK"] == [str(model.pk)]]
    assert row["model"] == ["de-CGCNN (sum)"]
    assert row["targets"] == ["E [eV]", "emt_energy [eV/atom]"]
    assert row["test MAE"] == [f"E {mae['E']} eV", f"emt_energy {mae['emt_energy']} eV/atom"]
    assert row["epochs"] == ["2"]
    assert row["training data"] == [f"CrystalDatasetData<{dataset.pk}> ({len(hybrid)} structures)"]

    shown = runner.invoke(model_group, ["show", str(model.pk)], catch_exceptions=False).output
    fields = show_fields(shown)
    assert fields["PK"] == str(model.pk) and fields["kind"] == "de-CGCNN" and fields["pooling"] == "sum"
    assert fields["test MAE"] == f"E {mae['E']} eV; emt_energy {mae['emt_energy']} eV/atom"
    assert fields["descriptors"] == "2: density, vpa" and fields["epochs"] == "2"
    assert fields["training data"] == f"CrystalDatasetData<{dataset.pk}> ({len(hybrid)} structures)"
    assert fields["sha256"] == model.sha256 and fields["predictions"] == "2"

    # every prediction of the model: a row per structure with its values and units
    made = runner.invoke(model_group, ["predictions", str(model.pk)], catch_exceptions=False).output
    rows = {r["structure"][0]: r for r in table_rows(made)}
    assert set(rows) == {structures[0].uuid, structures[1].uuid}
    for k in range(2):
        assert rows[structures[k].uuid]["prediction"] == [
            f"E = {predicted[k, 0]:.6g} eV",
            f"emt_energy = {predicted[k, 1]:.6g} eV/atom",
        ]
        assert rows[structures[k].uuid]["by"][0].startswith("predict_structures ")
    # every prediction for a structure: the model's pk and its training dataset
    (row,) = table_rows(
        runner.invoke(model_group, ["predictions", str(structures[1].pk)], catch_exceptions=False).output
    )
    assert row["prediction"] == [
        f"E = {predicted[1, 0]:.6g} eV",
        f"emt_energy = {predicted[1, 1]:.6g} eV/atom",
    ]
    assert row["model"] == [f"{model.pk} trained on {dataset.uuid[:8]}"]

    listed = runner.invoke(dataset_group, ["list"], catch_exceptions=False).output
    (row,) = [r for r in table_rows(listed) if r["PK"] == [str(dataset.pk)]]
    assert row["size"] == [str(len(hybrid))] and row["targets"] == ["E [eV], emt_energy [eV/atom]"]
    assert sorted(row["elements"][0].split()) == sorted(dataset.base.attributes.get("elements"))
    assert row["features"] == ["2"] and row["models"] == ["1"] and row["sha256"] == [dataset.sha256[:12]]
    (row,) = [r for r in table_rows(listed) if r["PK"] == [str(renamed.pk)]]
    assert row["models"] == ["0"]
    shown = runner.invoke(dataset_group, ["show", str(dataset.pk)], catch_exceptions=False).output
    fields = show_fields(shown)
    assert fields["PK"] == str(dataset.pk) and fields["size"] == str(len(hybrid))
    assert fields["targets"] == "E [eV], emt_energy [eV/atom]" and fields["task"] == "regression"
    assert fields["descriptor features"] == "2: density, vpa" and fields["skipped"] == "-"
    assert fields["models trained"] == "1" and fields["sha256"] == dataset.sha256
