"""Files from an untrusted source never run code, and their members never reach outside their folder.

Each crafted file below runs code when unpickled: it creates a marker file (shown by loading one with
pickle allowed). Every reader of the package refuses it, or (a cache) ignores it, and the marker never
appears. Archive members with ``..``, absolute names or links are never followed or written outside.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from click.testing import CliRunner

from aiida_cgcnn.cli.main import cli
from aiida_cgcnn.ensemble import Ensemble
from aiida_cgcnn.errors import CheckpointError, DatasetError
from aiida_cgcnn.graph import GraphSettings
from aiida_cgcnn.graph.batch import GraphStore, build_graph_store
from aiida_cgcnn.phonons import PhononInputError, PhononSettings, read_phonopy_calculation
from aiida_cgcnn.pretrained.registry import MODELS_DIR, available
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset, load_dataset
from tests.builders import bcc_primitive, fcc_primitive, rocksalt_primitive

SHIPPED = "elastic-moduli"


class Touch:
    """Unpickling it creates ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _dataset() -> CrystalDataset:
    crystals = [fcc_primitive(sid="Cu"), bcc_primitive(sid="Fe"), rocksalt_primitive(sid="NaCl")]
    return CrystalDataset.from_crystals(crystals, [[1.0], [2.0], [3.0]], ["e"], ["eV"])


def _crafted(path: Path, source: Path, marker: Path, key: str) -> Path:
    """``source`` (an ``.npz``) with the array ``key`` replaced by a pickled object array."""
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[key] = np.array([Touch(marker), *arrays[key].reshape(-1)[1:].tolist()], dtype=object)
    np.savez(path, **arrays)  # np.savez pickles object arrays
    return path


def test_the_crafted_file_runs_code_when_pickle_is_allowed(tmp_path):
    """The control: the crafted files below really are dangerous."""
    source = _dataset().save(tmp_path / "good.npz")
    marker = tmp_path / "code-ran"
    with np.load(_crafted(tmp_path / "evil.npz", source, marker, "ids"), allow_pickle=True) as data:
        data["ids"]
    assert marker.exists()


@pytest.mark.parametrize("key", ["ids", "header", "targets"])
def test_datasets_with_pickled_objects_are_refused(tmp_path, key):
    source = _dataset().save(tmp_path / "good.npz")
    marker = tmp_path / "code-ran"
    evil = _crafted(tmp_path / "evil.npz", source, marker, key)
    refused = r"holds pickled Python objects, which could run code when read: refused"
    with pytest.raises(DatasetError, match=refused):
        CrystalDataset.load(evil)
    with pytest.raises(DatasetError, match=refused):
        CrystalDataset.load(io.BytesIO(evil.read_bytes()))
    with pytest.raises(DatasetError, match=refused):
        load_dataset(evil)
    # the command line: an input error that says why, no traceback
    result = CliRunner().invoke(cli, ["dataset", "info", str(evil)])
    assert result.exit_code != 0 and "pickled Python objects" in result.output
    assert not marker.exists()


def test_a_pickle_named_npz_is_refused(tmp_path):
    """A file that is a pickle, not a NumPy archive: NumPy would unpickle it only with pickle allowed."""
    import pickle

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps({"ids": Touch(marker)}))
    with pytest.raises(DatasetError, match=r"not a readable dataset file .*pickled"):
        CrystalDataset.load(evil)
    assert GraphStore.load(evil, "any") is None
    assert not marker.exists()


def test_a_dataset_node_refuses_pickled_objects(aiida_profile, tmp_path):
    from aiida_cgcnn.data.dataset import CrystalDatasetData

    source = _dataset().save(tmp_path / "good.npz")
    marker = tmp_path / "code-ran"
    evil = _crafted(tmp_path / "evil.npz", source, marker, "frac_coords")
    with pytest.raises(DatasetError, match="pickled Python objects"):
        CrystalDatasetData(evil)
    assert not marker.exists()


def test_a_crafted_graph_cache_is_rebuilt_not_loaded(tmp_path):
    crystals = list(_dataset().crystals())
    settings = GraphSettings()
    fresh, _ = build_graph_store(crystals, settings, workers=1, cache_dir=tmp_path / "fresh")
    (cached,) = (tmp_path / "fresh").glob("graphs-*.npz")
    with np.load(cached, allow_pickle=False) as data:
        key = str(data["key"])
    assert GraphStore.load(cached, key) is not None  # the control: a sound cache file is used

    marker = tmp_path / "code-ran"
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(cached.with_suffix(".failures.json"), cache)
    for name in ("src", "key"):
        evil = _crafted(cache / cached.name, cached, marker, name)
        assert GraphStore.load(evil, key) is None
        store, failures = build_graph_store(crystals, settings, workers=1, cache_dir=cache)
        assert not failures and np.array_equal(store.src, fresh.src)
    assert not marker.exists()


def test_checkpoints_with_pickled_code_are_refused(aiida_profile, tmp_path):
    from aiida_cgcnn.data.model import ModelData

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "aiida-cgcnn-checkpoint", "state_dict": Touch(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="not a loadable"):
        ModelData(evil)
    assert not marker.exists()


# --- archives and model folders --------------------------------------------------------------------


@pytest.fixture
def shipped(tmp_path) -> Path:
    if SHIPPED not in available():
        pytest.skip(f"the pretrained model {SHIPPED!r} is not installed")
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / SHIPPED, folder)
    return folder


def _list_member(folder: Path, index: int, path: str) -> None:
    card = json.loads((folder / "card.json").read_text())
    card["files"][index]["path"] = path
    (folder / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "link"])
def test_a_model_folder_cannot_reach_outside(aiida_profile, shipped, tmp_path, kind):
    """A card listing ``../x``, ``/abs/x`` or a member that links outside: refused by every reader,
    even where the file outside is the right checkpoint (so nothing but the path can refuse it)."""
    from aiida_cgcnn.data.ensemble import EnsembleData

    outside = tmp_path / "outside.pt"
    shutil.move(shipped / "member-3.pt", outside)
    if kind == "dotdot":
        _list_member(shipped, 3, "../outside.pt")
    elif kind == "absolute":
        _list_member(shipped, 3, str(outside))
    else:
        (shipped / "member-3.pt").symlink_to(outside)
    match = "refused" if kind != "link" else "outside the model folder: refused"
    with pytest.raises(CheckpointError, match=match):
        EnsembleData(folder=shipped)
    with pytest.raises(CheckpointError, match=match):
        Ensemble.from_directory(shipped)
    # the control: the same file inside the folder is accepted
    (shipped / "member-3.pt").unlink(missing_ok=True)
    shutil.copy(outside, shipped / "member-3.pt")
    _list_member(shipped, 3, "member-3.pt")
    assert EnsembleData(folder=shipped).base.attributes.get("members") == 5


def _phonon_folder(tmp_path: Path) -> Path:
    from tests.phonons.test_io import write_phonondb_layout

    settings = PhononSettings(supercell_matrix=(2, 2, 2), mesh=10.0)
    return write_phonondb_layout(tmp_path / "cu", bulk("Cu", "fcc", a=3.59), settings, dim="2 2 2")


def test_archive_links_and_absolute_members_are_not_followed(tmp_path):
    folder = _phonon_folder(tmp_path)
    escaped = tmp_path / "escaped"
    good = tmp_path / "good.tar.xz"
    with tarfile.open(good, "w:xz") as archive:
        for name in ("POSCAR-unitcell", "phonopy.conf", "FORCE_SETS"):
            archive.add(folder / name, arcname=f"cu/{name}")
    assert read_phonopy_calculation(good).forces is not None  # the control

    evil = tmp_path / "evil.tar.xz"
    with tarfile.open(evil, "w:xz") as archive:
        for name in ("phonopy.conf", "FORCE_SETS"):  # absolute names: read, never written there
            archive.add(folder / name, arcname=f"{escaped}/{name}")
        link = tarfile.TarInfo("cu/POSCAR-unitcell")  # a link to the real file outside the archive
        link.type, link.linkname = tarfile.SYMTYPE, str(folder / "POSCAR-unitcell")
        archive.addfile(link)
        hard = tarfile.TarInfo("cu/BORN")
        hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
        archive.addfile(hard)
    with pytest.raises(PhononInputError, match="evil"):
        read_phonopy_calculation(evil)
    assert not escaped.exists()
