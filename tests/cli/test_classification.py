"""Classification through the command line: ``dataset create --task classification``, ``train`` and
``predict``; the predictions CSV against the Python Predictor on the same checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_cgcnn.predict import Predictor, parse_predictions_csv
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.cli.helpers import cli, write_config
from tests.datadirs import write_valid_directory


@pytest.fixture(scope="module")
def classified(tmp_path_factory):
    """Twelve structures labelled 0, 1, 2 by their kind (rock salt, CsCl, fcc), as a data directory."""
    data = write_valid_directory(tmp_path_factory.mktemp("classes") / "data", n=12)
    labels = {sid: k % 3 for k, sid in enumerate(data.valid)}
    (data.path / "id_prop.csv").write_text("".join(f"{sid},{label}\n" for sid, label in labels.items()))
    return data.path, labels


def test_classification_through_the_commands(classified, tmp_path):
    directory, labels = classified
    made = cli("dataset", "create", directory, "--task", "classification", "-o", tmp_path / "classes.npz")
    assert made.returncode == 0, made.stderr
    dataset = CrystalDataset.load(tmp_path / "classes.npz")
    assert dataset.task == "classification"
    assert dict(zip(map(str, dataset.ids), dataset.targets[:, 0].astype(int).tolist(), strict=True)) == labels

    config = write_config(tmp_path / "config.json")
    trained = cli(
        "train", tmp_path / "classes.npz", "-o", tmp_path / "run", "--config", config, "--epochs", "15",
        "--lr", "0.02", "--split", "1", "0", "0", "--workers", "1", "--seed", "4", "--no-progress",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    checkpoint = tmp_path / "run" / "best.pt"
    predictor = Predictor.from_checkpoint(checkpoint)
    assert predictor.task == "classification"

    run = cli("predict", checkpoint, tmp_path / "classes.npz", "-o", tmp_path / "out" / "predictions.csv")
    assert run.returncode == 0, run.stderr
    units, rows = parse_predictions_csv((tmp_path / "out" / "predictions.csv").read_text())
    assert units == {
        "id": "",
        "predicted": "class index",
        "p_0": "probability",
        "p_1": "probability",
        "p_2": "probability",
    }
    probabilities = np.array([[row[f"p_{c}"] for c in range(3)] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predicted = [row["predicted"] for row in rows]
    assert predicted == probabilities.argmax(axis=1).tolist()
    assert len(set(predicted)) >= 2  # trained enough to tell classes apart

    # the same checkpoint in Python: the same structures, classes and probabilities
    expected = predictor.predict(dataset)
    assert [row["id"] for row in rows] == expected.ids == list(labels)
    assert predicted == expected.labels.tolist()
    np.testing.assert_allclose(probabilities, expected.values, rtol=1e-6, atol=1e-7)
