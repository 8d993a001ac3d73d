"""A stored model, ensemble or dataset whose repository file was altered after storing is refused before
it is loaded, exported or uploaded; the error names the node and says what to do."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.data.ensemble import EnsembleData
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.data.pretrained import import_pretrained
from aiida_cgcnn.errors import CheckpointError, DatasetError
from aiida_cgcnn.pretrained.registry import MODELS_DIR, available
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.builders import bcc_primitive, fcc_primitive

SHIPPED = "elastic-moduli"  # the smallest shipped ensemble: real checkpoints without training


@pytest.fixture
def shipped():
    if SHIPPED not in available():
        pytest.skip(f"the pretrained model {SHIPPED!r} is not installed")
    return MODELS_DIR / SHIPPED


class Touch:
    """Unpickling it creates ``path``: a file that runs code when loaded with pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _dataset_node() -> CrystalDatasetData:
    crystals = [fcc_primitive(sid="Cu"), bcc_primitive(sid="Fe")]
    dataset = CrystalDataset.from_crystals(crystals, [[1.0], [2.0]], ["e"], ["eV"])
    return CrystalDatasetData.from_dataset(dataset).store()


def _calcjob_count() -> int:
    return orm.QueryBuilder().append(orm.CalcJobNode).count()


def test_an_altered_model_is_refused_before_loading(alter_stored_file, shipped, tmp_path):
    original = shipped / "member-0.pt"
    node = ModelData(original).store()
    assert node.verify() and node.get_checkpoint()["targets"]["names"] == node.targets

    # a checkpoint whose unpickling runs code: refused before torch ever reads it
    marker = tmp_path / "code-ran"
    alter_stored_file(
        node, node.filename, pickle.dumps({"format": "aiida-cgcnn-checkpoint", "x": Touch(marker)})
    )
    for use in (node.get_checkpoint, node.get_predictor, lambda: node.export(tmp_path / "out.pt")):
        with pytest.raises(CheckpointError) as error:
            use()
        message = str(error.value)
        assert f"ModelData<{node.pk}>" in message and node.uuid in message
        assert "'model.pt' was altered after the node was stored" in message
        assert "import the checkpoint again from a trusted copy" in message
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()
    assert not node.verify()

    # a valid checkpoint, only another one: still refused (the check is the hash, not whether it loads)
    alter_stored_file(node, node.filename, (shipped / "member-1.pt").read_bytes())
    with pytest.raises(CheckpointError, match="was altered after the node was stored"):
        node.get_checkpoint()

    # the re-import the message asks for gives a new, sound node, never the altered one
    again = ModelData.get_or_create(original)
    assert again.pk != node.pk and again.verify()
    assert again.get_checkpoint()["targets"] == ModelData(original).get_checkpoint()["targets"]


def test_an_altered_ensemble_is_refused(alter_stored_file, shipped, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    node = EnsembleData(folder=folder).store()
    assert node.verify()

    member = alter_stored_file(node, "member-2.pt", (folder / "member-0.pt").read_bytes())
    with pytest.raises(CheckpointError) as error:
        node.get_ensemble()
    assert f"EnsembleData<{node.pk}>" in str(error.value) and "'member-2.pt' was altered" in str(error.value)
    with pytest.raises(CheckpointError, match=r"member-2\.pt"):
        node.export(tmp_path / "exported")
    assert not list((tmp_path / "exported").iterdir())  # checked before anything is written

    # a card with another calibration scale (the members as stored): the card is checked too
    member.write_bytes((folder / "member-2.pt").read_bytes())
    assert node.verify()
    card = json.loads((folder / "card.json").read_text())
    card["std_scale"] = [100.0 * s for s in card["std_scale"]]
    alter_stored_file(node, "card.json", json.dumps(card).encode())
    with pytest.raises(CheckpointError, match=r"'card\.json' was altered"):
        node.get_ensemble()
    # importing the shipped model again never returns the altered node
    imported = import_pretrained(SHIPPED)
    assert imported.pk != node.pk and imported.verify()


def test_an_altered_dataset_is_refused(alter_stored_file, tmp_path):
    node = _dataset_node()
    assert len(node.get_dataset()) == 2
    content = node.get_content(mode="rb")
    alter_stored_file(node, node.filename, content[:-10] + b"0123456789")
    with pytest.raises(DatasetError) as error:
        node.get_dataset()
    assert f"CrystalDatasetData<{node.pk}>" in str(error.value) and "make the dataset node again" in str(
        error.value
    )


def test_a_calcjob_never_uploads_an_altered_file(alter_stored_file, cgcnn_code, shipped, tmp_path):
    """The model and dataset ports check the files before the job is made: no CalcJobNode, no upload."""
    model = ModelData(shipped / "member-0.pt").store()
    dataset = _dataset_node()
    alter_stored_file(model, model.filename, b"not the stored checkpoint")
    before = _calcjob_count()
    altered = rf"ModelData<{model.pk}>.*'model.pt' was altered after the node was stored"
    with pytest.raises(ValueError, match=altered):  # a builder refuses it when the input is set
        PredictCalculation.get_builder().model = model
    for process in (PredictCalculation, TrainCalculation):  # and the process when it is made
        with pytest.raises(ValueError, match=altered):
            run_get_node(process, code=cgcnn_code, model=model, dataset=dataset)

    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    ensemble = EnsembleData(folder=folder).store()
    alter_stored_file(ensemble, "member-4.pt", b"not a member")
    with pytest.raises(ValueError, match=rf"EnsembleData<{ensemble.pk}>.*'member-4.pt' was altered"):
        run_get_node(PredictCalculation, code=cgcnn_code, model=ensemble, dataset=dataset)

    other = ModelData(shipped / "member-1.pt").store()
    alter_stored_file(dataset, dataset.filename, b"garbage")
    for process in (PredictCalculation, TrainCalculation):
        with pytest.raises(ValueError, match=rf"CrystalDatasetData<{dataset.pk}>.*was altered"):
            run_get_node(process, code=cgcnn_code, model=other, dataset=dataset)
    assert _calcjob_count() == before


def test_a_file_altered_after_the_job_was_made_is_refused_at_upload(alter_stored_file, cgcnn_code, shipped):
    """The check runs again when the job's files are prepared for upload, and the job uploads the bytes
    it checked: a stored file altered between the job's creation and its upload never reaches the
    computer."""
    from aiida.common.folders import SandboxFolder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    model = ModelData(shipped / "member-2.pt").store()
    dataset = _dataset_node()
    runner = get_manager().get_runner()
    predict = instantiate_process(runner, PredictCalculation, code=cgcnn_code, model=model, dataset=dataset)
    train = instantiate_process(runner, TrainCalculation, code=cgcnn_code, model=model, dataset=dataset)
    with SandboxFolder() as folder:  # unaltered: the folder holds exactly the stored bytes
        calc_info = predict.prepare_for_submission(folder)
        assert calc_info.local_copy_list == []
        for name, node in (("model.pt", model), ("dataset.npz", dataset)):
            with open(folder.get_abs_path(name), "rb") as handle:
                assert handle.read() == node.get_content(mode="rb")

    alter_stored_file(dataset, dataset.filename, b"altered after the job was made")
    for process in (predict, train):
        with (
            SandboxFolder() as folder,
            pytest.raises(DatasetError, match=rf"CrystalDatasetData<{dataset.pk}>.*altered"),
        ):
            process.prepare_for_submission(folder)
