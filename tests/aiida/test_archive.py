"""An archive of a trained model with its provenance (``verdi archive create``), imported into a fresh
profile: it predicts the same numbers and its past predictions are found there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiida_cgcnn.calculations.functions import dataset_from_structures, predict_structures
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.training.trainer import Trainer


def test_archive_round_trip_into_a_fresh_profile(
    aiida_profile, aiida_config, aiida_profile_factory, verdi_env, alloy_data, structures, tmp_path
):
    dataset = dataset_from_structures(structures, alloy_data[1], ["emt_energy"], ["eV/atom"])
    result = Trainer(
        dataset.get_dataset(),
        tmp_path / "run",
        model_config={"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16},
        train_config={"epochs": 1, "batch_size": 8},
        progress=False,
    ).fit()
    model = ModelData.get_or_create(result.best_checkpoint)
    record = predict_structures(model=model, nacl=structures[3])["nacl"]
    before = {
        "model": model.uuid,
        "structure": structures[3].uuid,
        "process": record.creator.uuid,
        "dataset": dataset.uuid,
    }
    values = record["values"]

    archive = tmp_path / "model.aiida"
    verdi = Path(sys.executable).parent / "verdi"
    env, profile = verdi_env
    command = [str(verdi), "-p", profile, "archive", "create", "-N", str(model.pk)]
    command += ["--input-calc-forward", str(archive)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert archive.is_file()

    with aiida_profile_factory(aiida_config):
        from aiida import orm
        from aiida.tools.archive import import_archive

        from aiida_cgcnn.provenance import find_model_predictions, find_predictions

        assert orm.QueryBuilder().append(ModelData).count() == 0  # a fresh profile
        import_archive(archive)
        imported = orm.load_node(before["model"])
        structure = orm.load_node(before["structure"])
        # the past prediction is found, with its model and training data
        (past,) = find_predictions(structure)
        assert past.process_uuid == before["process"] and past.values == values
        assert past.model_uuid == imported.uuid and past.training_dataset_uuid == before["dataset"]
        # and the imported model predicts the same numbers
        again = predict_structures(model=imported, nacl=structure)["nacl"]
        assert again["values"]["emt_energy"] == pytest.approx(values["emt_energy"], rel=1e-9)
        assert len(find_model_predictions(imported)) == 2
