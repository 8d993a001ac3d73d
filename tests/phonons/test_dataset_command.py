"""``aiida-cgcnn phonons dataset``: phonopy calculations become a training dataset of U and Cv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiida_cgcnn.phonons import PhononSettings
from aiida_cgcnn.phonons.dataset import phonon_dataset
from aiida_cgcnn.training.dataset import CrystalDataset

from .conftest import assert_reproduces_table
from .test_io import FEW, write_phonondb_layout


@pytest.fixture(scope="module")
def emt_folder(tmp_path_factory, fcc_metals, bcc_copper):
    """EMT Cu and Al, and unstable bcc Cu, in phonondb's layout."""
    root = tmp_path_factory.mktemp("emt-phonons")
    write_phonondb_layout(root / "cu", fcc_metals["Cu"])
    write_phonondb_layout(root / "al", fcc_metals["Al"])
    write_phonondb_layout(root / "cu-bcc", bcc_copper)
    return root


def _command(*args) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "aiida-cgcnn"
    return subprocess.run(
        [str(executable), "phonons", "dataset", *map(str, args)], capture_output=True, text=True
    )


def test_dataset_from_a_folder_leaves_out_the_unstable(emt_folder, tmp_path):
    out = tmp_path / "emt.npz"
    result = _command(emt_folder, "-o", out, "--mesh", "20", "--table", tmp_path / "table.jsonl")
    assert result.returncode == 0, result.stderr
    data = CrystalDataset.load(out)
    assert sorted(data.ids) == ["al", "cu"]
    assert data.target_names == ["U", "Cv"] and data.units == ["kJ/mol", "J/(K mol)"]
    assert data.metadata["temperature_K"] == 300.0 and data.metadata["per"] == "mole of primitive cells"
    assert list(data.num_atoms) == [1, 1]  # phonopy's primitive cells, not the unit cells given
    skipped = out.with_suffix(".skipped.txt").read_text()
    assert skipped.startswith("cu-bcc\tunstable: lowest frequency -1.") and "imaginary modes" in skipped
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "table.jsonl").read_text().splitlines())}
    for k, sid in enumerate(data.ids):
        assert data.targets[k, 0] == pytest.approx(rows[sid]["U_kJmol"][0], rel=1e-12)
        assert data.targets[k, 1] == pytest.approx(rows[sid]["Cv_JKmol"][0], rel=1e-12)
    # the same numbers as the Python API
    api, _, _ = phonon_dataset([emt_folder], settings=PhononSettings(mesh=20.0))
    np.testing.assert_allclose(api.targets, data.targets, rtol=1e-12)


def test_several_temperatures_name_the_targets(emt_folder, tmp_path):
    out = tmp_path / "emt-T.npz"
    result = _command(emt_folder / "cu", "-o", out, "--mesh", "20", "-t", "300", "-t", "1000")
    assert result.returncode == 0, result.stderr
    data = CrystalDataset.load(out)
    assert data.target_names == ["U_300K", "Cv_300K", "U_1000K", "Cv_1000K"]
    assert data.metadata["temperatures_K"] == [300.0, 1000.0]
    assert data.targets[0, 3] > data.targets[0, 1]  # Cv rises with T


def test_unreadable_input_is_named_with_exit_code_4(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "phonopy.conf").write_text("DIM = 2 2 2\n")
    result = _command(tmp_path / "broken", "-o", tmp_path / "x.npz")
    assert result.returncode == 4
    assert "broken" in result.stderr and "POSCAR-unitcell" in result.stderr


@pytest.mark.data
def test_dataset_from_phonondb_archives(phonondb, tmp_path):
    folder = tmp_path / "archives"
    folder.mkdir()
    for name in FEW:
        (folder / phonondb["archives"][name].name).symlink_to(phonondb["archives"][name])
    out = tmp_path / "phonondb.npz"
    table = tmp_path / "table.jsonl"
    result = _command(folder, "-o", out, "--workers", "2", "--table", table)
    assert result.returncode == 0, result.stderr
    data = CrystalDataset.load(out)
    assert "materials-id-10175-kcdf3-pm-3m-221" not in data.ids  # -2.85 THz
    assert len(data) == len(FEW) - 1
    rows = {r["name"]: r for r in map(json.loads, table.read_text().splitlines())}
    for k, name in enumerate(data.ids):
        record = phonondb["table"][name]
        u, cv = data.targets[k]
        assert_reproduces_table(u, cv, rows[name]["n_qpoints"], record, name)
        np.testing.assert_allclose(data.lattices[k], record["lattice"], atol=1e-6)
