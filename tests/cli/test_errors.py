"""The command's error guard: input a user can fix is exit 4 with a clear message and no traceback; a bug
(any other exception) is exit 1 with its traceback on stderr and in status.json, for the parsers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiida_cgcnn.cli.main import cli as command
from tests.cli.helpers import cli, status, write_config


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"train": {"epochs": 0}}, "epochs must be >= 1"),
        ({"train": {"epochs": "many"}}, "epochs must be int, not 'many'"),
        ({"train": {"epoch": 3}}, "unknown training settings ['epoch']"),
        ({"model": {"pooling": "max"}}, "pooling must be one of"),
        ({"model": {"n_conf": 2}}, "unknown model settings ['n_conf']"),
        ({"atom_properties": ["colour"]}, "unknown atom properties ['colour']"),
    ],
)
def test_bad_settings_exit_4_naming_the_setting(toy_dir, tmp_path, config, named):
    run = cli(
        "train", toy_dir.path, "-o", tmp_path / "run", "--config", write_config(tmp_path / "c.json", **config)
    )
    assert run.returncode == 4, run.stderr
    assert named in run.stderr and "Traceback" not in run.stderr
    st = status(tmp_path / "run")
    assert st["status"] == "invalid_input" and named in st["message"] and "traceback" not in st


def test_a_config_file_that_is_not_json_exits_4(toy_dir, tmp_path):
    (tmp_path / "c.json").write_text("model: {n_conv: 2}\n")
    run = cli("train", toy_dir.path, "-o", tmp_path / "run", "--config", tmp_path / "c.json")
    assert run.returncode == 4 and "c.json is not valid JSON" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unknown_descriptor_for_train_exits_4_before_any_work(toy_dir, tmp_path):
    run = cli("train", toy_dir.path, "-o", tmp_path / "run", "--descriptors", "densty")
    assert run.returncode == 4 and "--descriptors" in run.stderr and "densty" in run.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


def _bug(*args, **kwargs):
    raise ValueError("an index went wrong deep inside")


@pytest.mark.parametrize(
    ("target", "arguments"),
    [
        ("aiida_cgcnn.training.dataset.load_dataset", ["train", "{data}", "-o", "{out}"]),
        ("aiida_cgcnn.training.dataset.CrystalDataset.load", ["dataset", "info", "{npz}"]),
    ],
)
def test_a_bug_exits_1_with_its_traceback_in_status_json(toy_dir, tmp_path, monkeypatch, target, arguments):
    from aiida_cgcnn.training.dataset import CrystalDataset

    npz = tmp_path / "given" / "data.npz"
    CrystalDataset.from_cgcnn_directory(toy_dir.path)[0].save(npz)
    monkeypatch.setattr(target, _bug)  # a real core function fails as a bug would
    values = {"data": toy_dir.path, "out": tmp_path / "run", "npz": npz}
    result = CliRunner().invoke(command, [a.format(**values) for a in arguments])
    assert result.exit_code == 1, result.output
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: an index went wrong deep inside" in result.stderr
    where = tmp_path / "run" if arguments[0] == "train" else npz.parent
    st = json.loads((where / "status.json").read_text())
    assert st["status"] == "error" and st["exit_code"] == 1
    assert "ValueError" in st["message"] and "deep inside" in st["message"]
    assert "Traceback (most recent call last)" in st["traceback"] and "in _bug" in st["traceback"]


def test_usage_errors_inside_a_command_stay_usage_errors(tmp_path):
    (tmp_path / "model.pt").write_text("x")
    result = CliRunner().invoke(
        command, ["predict", str(tmp_path / "model.pt"), "-o", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 2 and "give a CHECKPOINT and DATA" in result.output
    assert not (tmp_path / "status.json").exists()


def test_feature_importance_of_a_classifier_exits_4_naming_the_checkpoint(tmp_path):
    from aiida_cgcnn.training.dataset import CrystalDataset
    from aiida_cgcnn.training.trainer import Trainer
    from tests.builders import bcc_primitive, fcc_primitive

    crystals = [
        (fcc_primitive if k % 2 else bcc_primitive)(29, 3.0 + 0.05 * k, sid=f"c{k}") for k in range(8)
    ]
    data, _ = CrystalDataset.from_structures(
        crystals, [k % 2 for k in range(8)], ids=[c.id for c in crystals], task="classification"
    )
    data.save(tmp_path / "data.npz")
    Trainer(data, tmp_path / "run", {"atom_fea_len": 8, "n_conv": 1}, {"epochs": 1}, progress=False).fit()
    run = cli("importance", tmp_path / "run" / "best.pt", tmp_path / "data.npz", "-o", tmp_path / "imp")
    assert run.returncode == 4, run.stderr
    assert "best.pt' is a classification model" in run.stderr and "Traceback" not in run.stderr
