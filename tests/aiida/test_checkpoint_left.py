"""Whether a stopped training left a checkpoint to resume from: read on the computer, or, when the
computer cannot be reached, from the retrieved learning curve (a refused SSH login must not make a
resumable training start again)."""

import io
import socket

import pytest
from aiida import orm

from aiida_cgcnn.workflows.train import checkpoint_left


def _retrieved(rows: int) -> orm.FolderData:
    folder = orm.FolderData()
    lines = ["epoch,train_loss"] + [f"{k},0.5" for k in range(rows)]
    folder.base.repository.put_object_from_filelike(
        io.BytesIO("\n".join(lines).encode()), "learning_curve.csv"
    )
    return folder.store()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_on_a_reachable_computer_the_folder_decides(aiida_localhost, tmp_path):
    (tmp_path / "run").mkdir()
    remote = orm.RemoteData(computer=aiida_localhost, remote_path=str(tmp_path)).store()
    assert checkpoint_left(remote, _retrieved(3)) == (False, "")  # run/ without last.pt
    (tmp_path / "run" / "last.pt").write_bytes(b"checkpoint")
    assert checkpoint_left(remote, _retrieved(0)) == (True, "")
    empty = orm.RemoteData(computer=aiida_localhost, remote_path=str(tmp_path / "nothing")).store()
    assert checkpoint_left(empty, _retrieved(3)) == (False, "")  # no folder at all: nothing to resume
    assert checkpoint_left(None, None) == (False, "")


@pytest.fixture
def unreachable(aiida_profile, tmp_path):
    """A core.ssh computer whose SSH server does not answer (a free port on 127.0.0.1)."""
    computer = orm.Computer(
        label=f"down-{tmp_path.name}",
        hostname="127.0.0.1",
        transport_type="core.ssh",
        scheduler_type="core.direct",
        workdir=str(tmp_path),
    ).store()
    computer.configure(port=_free_port(), username="nobody", look_for_keys=False, timeout=5)
    return computer


def test_when_the_computer_cannot_be_reached_the_retrieved_learning_curve_decides(unreachable, tmp_path):
    remote = orm.RemoteData(computer=unreachable, remote_path=str(tmp_path)).store()
    resumable, note = checkpoint_left(remote, _retrieved(3))
    assert resumable and "could not list its remote folder" in note and "has 3 epochs" in note
    assert checkpoint_left(remote, _retrieved(0))[0] is False
    assert checkpoint_left(remote, None)[0] is False
