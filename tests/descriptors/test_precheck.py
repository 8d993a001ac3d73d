"""`descriptors` refuses structures whose elements rule a descriptor out before any work starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiida_cgcnn.descriptors import engine
from aiida_cgcnn.descriptors.engine import elements_without_descriptors
from aiida_cgcnn.descriptors.hybrid import attach_descriptors
from aiida_cgcnn.errors import DatasetError
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.builders import crystal, fcc_primitive

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")


def _dataset() -> CrystalDataset:
    crystals = [fcc_primitive(sid=f"fcc-{k}", a=3.5 + 0.02 * k) for k in range(6)]
    crystals.insert(
        2, crystal("XeF2", np.diag([4.3, 4.3, 7.0]), [[0, 0, 0], [0, 0, 0.28], [0, 0, 0.72]], [54, 9, 9])
    )
    return CrystalDataset.from_crystals(crystals, np.arange(7.0), ["t"], ["eV"])


def test_elements_without_a_radius_are_found_from_the_elements_alone():
    crystals = list(_dataset().crystals())
    ((position, message),) = elements_without_descriptors(crystals, "all")
    assert position == 2 and "XeF2" in message and "Xe has none" in message and "packing_frac" in message
    assert elements_without_descriptors(crystals, "density,vpa") == []


def test_attach_descriptors_fails_before_computing_anything(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("descriptors were computed before the element check")

    monkeypatch.setattr("aiida_cgcnn.descriptors.hybrid.compute_descriptors", no_work)
    with pytest.raises(DatasetError, match=r"XeF2.*packing_frac"):
        attach_descriptors(_dataset(), "all")


def test_skipped_structures_are_never_tessellated(monkeypatch):
    seen = []
    original = engine._chunk

    def spy(args):
        seen.extend(c.id for _, c in args[0])
        return original(args)

    monkeypatch.setattr(engine, "_chunk", spy)
    data, skipped = attach_descriptors(_dataset(), "packing_frac,vpa", workers=1, skip_invalid=True)
    assert [s.id for s in skipped] == ["XeF2"] and len(data) == 6
    assert "XeF2" not in seen


def test_the_command_fails_at_once_naming_the_structure(tmp_path):
    _dataset().save(tmp_path / "data.npz")
    result = subprocess.run(
        [
            EXECUTABLE,
            "descriptors",
            str(tmp_path / "data.npz"),
            "-o",
            str(tmp_path / "out.npz"),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 4, result.stderr
    assert (
        "XeF2" in result.stderr
        and "Xe has none" in result.stderr
        and "leave packing_frac out" in result.stderr
    )
