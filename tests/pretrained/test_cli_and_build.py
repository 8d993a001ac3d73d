"""The pretrained commands through the installed executable, the calibration maths, and a rebuild."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiida_cgcnn.ensemble import Ensemble, read_ensemble_csv
from aiida_cgcnn.pretrained import available, card
from aiida_cgcnn.pretrained.evaluate import calibration_stats, fit_scale
from tests.builders import perovskite
from tests.cli.helpers import cli, status


def test_list_prints_the_registry_as_a_table():
    run = cli("pretrained", "list")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "targets", "units"]
    for name in available():
        entry = card(name)
        row = next(line for line in lines if line.startswith(f"{name} v{entry['version']}"))
        first = entry["targets"][0]["name"]
        assert f"{entry['metrics']['targets'][first]['mae']:.4g}" in row
        assert str(entry["members"]) in row.split()


def test_predict_by_name_writes_mean_std_basis_and_domain(tmp_path):
    perovskite("Sr").to(filename=str(tmp_path / "SrTiO3.cif"))
    perovskite("Pu").to(filename=str(tmp_path / "PuTiO3.cif"))
    (tmp_path / "broken.cif").write_text("not a structure")
    out = tmp_path / "out" / "predictions.csv"
    files = [tmp_path / "SrTiO3.cif", tmp_path / "broken.cif", tmp_path / "PuTiO3.cif"]
    run = cli("predict", "--model", "perovskite-formation", *files, "-o", out, "--skip-invalid")
    assert run.returncode == 0, run.stderr
    assert "outside the training domain" in run.stderr and "Pu" in run.stderr
    model, units, rows = read_ensemble_csv(out)
    assert model == "pretrained perovskite-formation v1, trained on perovskites (RPBE)"
    assert [r["id"] for r in rows] == ["SrTiO3", "PuTiO3"]  # file stems
    assert units["heat_all_pred"] == "eV/cell (per formula unit)"
    assert rows[0]["out_of_domain"] == "" and "Pu" in rows[1]["out_of_domain"]
    expected = Ensemble.pretrained("perovskite-formation").predict([perovskite("Sr")], warn=False)
    assert rows[0]["heat_all_pred"] == pytest.approx(expected.mean[0, 0], rel=1e-6)
    assert rows[0]["heat_all_std"] == pytest.approx(expected.std[0, 0], rel=1e-6)
    assert rows[0]["heat_all_per_atom"] == pytest.approx(expected.mean[0, 0] / 5, rel=1e-6)
    report = status(out.parent)
    assert report["out_of_domain"] == 1 and [s["id"] for s in report["skipped"]] == ["broken"]


def test_an_unknown_model_is_an_input_error(tmp_path):
    perovskite("Sr").to(filename=str(tmp_path / "SrTiO3.cif"))
    run = cli("predict", "--model", "nope", tmp_path / "SrTiO3.cif", "-o", tmp_path / "p.csv")
    assert run.returncode == 4
    assert "no pretrained model 'nope'" in run.stderr and "Traceback" not in run.stderr


def test_scale_fitted_on_one_part_calibrates_another():
    rng = np.random.default_rng(7)
    std = rng.uniform(0.5, 2.0, size=(20000, 2))
    error = rng.normal(size=std.shape) * std * np.array([3.0, 0.5])  # spread 3x too small, 2x too large
    scale = fit_scale(error[:10000], std[:10000], np.zeros((10000, 2)))
    np.testing.assert_allclose(scale, [3.0, 0.5], rtol=0.03)
    raw = calibration_stats(error[10000:, 0], std[10000:, 0])
    fixed = calibration_stats(error[10000:, 0], scale[0] * std[10000:, 0])
    assert raw["coverage_1sigma"] < 0.3
    assert fixed["coverage_1sigma"] == pytest.approx(0.6827, abs=0.015)
    assert fixed["coverage_2sigma"] == pytest.approx(0.9545, abs=0.01)
    # |error| grows with sigma here, so the rank correlation is positive
    assert fixed["spearman_error_std"] > 0.1


@pytest.mark.slow
@pytest.mark.data
def test_build_rebuilds_a_small_version_in_the_registry_format(tmp_path, shared_data):
    out = tmp_path / "perovskite-formation"
    run = cli(
        "pretrained",
        "build",
        "perovskite-formation",
        "--data",
        shared_data,
        "-o",
        out,
        "--epochs",
        "2",
        "--members",
        "0,1",
        timeout=1800,
    )
    assert run.returncode == 0, run.stderr
    built = json.loads((out / "card.json").read_text())
    shipped = card("perovskite-formation")

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k not in ("by_element",)}
        return type(value).__name__

    assert shape({k: v for k, v in built.items() if k not in ("files", "built", "train")}) == shape(
        {k: v for k, v in shipped.items() if k not in ("files", "built", "train")}
    )
    assert built["test_ids"] == shipped["test_ids"]  # the same fixed test part
    assert built["data"]["sha256"] == shipped["data"]["sha256"]
    assert len(built["files"]) == 2 and built["train"]["epochs"] == 2
    ensemble = Ensemble.from_directory(out)
    assert len(ensemble.members) == 2
    # each member drew its own training part from the same pool: different seeds, different splits
    splits = [m.checkpoint["split"]["train"].tolist() for m in ensemble.members]
    assert splits[0] != splits[1]
