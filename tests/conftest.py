"""Shared fixtures: small real structures, the project's real DFT data (skipped when absent), small models."""

from __future__ import annotations

import os
import sys

# One thread per process: the suite runs with -n 2 on small machines, where torch's default of one
# thread per core makes every worker fight for the same cores (and subprocesses inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pytest
import torch

from aiida_cgcnn.training.public_data import shared_data_dir
from tests.builders import SMALL_MODEL

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # a test that asks for the real data is a `data` test, whether or not it carries the marker
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


def pytest_runtest_setup(item):
    if item.get_closest_marker("data") is not None and shared_data_dir() is None:
        pytest.skip("needs the real data in ../shared/data (or $AIIDA_CGCNN_DATA), which is absent")


@pytest.fixture(autouse=True)
def _aiida_logging_restored():
    """A ``verdi`` command invoked in-process (CliRunner) reconfigures AiiDA's logging for a terminal
    and drops the handler that stores reports in the database, for the rest of the worker's tests:
    a later test reading a work chain's reports would find none, depending on the test order."""
    yield
    log = sys.modules.get("aiida.common.log")
    if log is None or not log.CLI_ACTIVE:
        return
    log.CLI_ACTIVE, log.CLI_LOG_LEVEL = None, None
    from aiida.manage import get_manager

    manager = get_manager()
    profile = manager.get_profile()
    if profile is not None and manager.profile_storage_loaded:
        log_file = manager.get_config().filepaths(profile)["profile"]["log"]
        log.configure_logging(with_orm=True, daemon_log_file=log_file)


@pytest.fixture(scope="session")
def shared_data():
    """The real-data folder; tests using it skip cleanly when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("needs the real data in ../shared/data (or $AIIDA_CGCNN_DATA), which is absent")
    return path


@pytest.fixture(scope="session")
def jarvis_dir(shared_data):
    path = shared_data / "jarvis-sample"
    if not (path / "id_prop.csv").is_file():
        pytest.skip("jarvis-sample is absent from the real data")
    return path


@pytest.fixture(scope="session")
def jarvis_dataset(jarvis_dir):
    """The 49 valid JARVIS structures (POSCAR-JVASP-21210, noble-gas only, is skipped)."""
    from aiida_cgcnn.training.dataset import CrystalDataset

    dataset, skipped = CrystalDataset.from_cgcnn_directory(jarvis_dir, skip_invalid=True)
    assert [s.id for s in skipped] == ["POSCAR-JVASP-21210.vasp"]
    return dataset


@pytest.fixture(scope="session")
def perovskite_file(shared_data):
    path = shared_data / "perovskites" / "castelli-perov5-part-a.csv.gz"
    if not path.is_file():
        pytest.skip("the perovskite data is absent")
    return path


@pytest.fixture
def small_model():
    return dict(SMALL_MODEL)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
