"""AiiDA fixtures shared by tests/aiida and tests/daemon: aiida-core's own (temporary SQLite profile,
small real datasets. The code is the real ``aiida-cgcnn`` executable of this environment."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# the daemon is started through this environment's ``verdi``, looked up on PATH when aiida is imported
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

from aiida.tools.pytest_fixtures import *  # noqa: F403  (aiida_profile, aiida_localhost, submit_and_await, ...)

EXECUTABLE = shutil.which("aiida-cgcnn") or str(Path(sys.executable).parent / "aiida-cgcnn")


@pytest.fixture
def cgcnn_code(aiida_code_installed, aiida_localhost):
    """The real ``aiida-cgcnn`` command on the localhost computer, polled every 0.2 s."""
    aiida_localhost.set_minimum_job_poll_interval(0.2)
    aiida_localhost.set_default_mpiprocs_per_machine(1)
    return aiida_code_installed(
        label="aiida-cgcnn",
        filepath_executable=EXECUTABLE,
        default_calc_job_plugin="cgcnn.train",
        prepend_text="export OMP_NUM_THREADS=1",
    )


@pytest.fixture(scope="session")
def alloy_data():
    """40 EMT alloys (8 atoms each) with their EMT energies (eV/atom)."""
    from aiida_cgcnn.demo import emt_alloys

    return emt_alloys(40, seed=7)


@pytest.fixture
def structures(aiida_profile, alloy_data):
    from aiida import orm

    return [orm.StructureData(ase=atoms).store() for atoms in alloy_data[0]]


@pytest.fixture
def dataset_node(structures, alloy_data):
    from aiida_cgcnn.calculations.functions import dataset_from_structures

    return dataset_from_structures(structures, alloy_data[1], ["emt_energy"], ["eV/atom"])


@pytest.fixture
def small_model():
    """A CGCNN small enough for seconds of training."""
    from tests.builders import SMALL_MODEL

    return dict(SMALL_MODEL)


@pytest.fixture
def small_parameters(small_model):
    return {"model": small_model, "train": {"epochs": 4, "batch_size": 8, "seed": 1}}


@pytest.fixture
def cgcnn_executable():
    return EXECUTABLE


@pytest.fixture
def verdi_env(aiida_profile):
    """Environment and profile name for a ``verdi``/``aiida-cgcnn`` subprocess that must see this
    test's nodes: the loaded profile and its configuration folder. Each conftest that imports aiida's
    fixtures has its own session profile and configuration, and the one made last is loaded (and named
    by ``AIIDA_PATH``), which need not be ``aiida_profile``."""
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config

    env = {**os.environ, "AIIDA_PATH": str(get_config().dirpath), "OMP_NUM_THREADS": "1"}
    return env, get_manager().get_profile().name


@pytest.fixture
def fresh_presto(tmp_path):
    """What a new user has: an empty AiiDA configuration in which ``verdi presto`` made the profile.
    Returns the environment (that configuration, this environment's ``aiida-cgcnn`` and ``verdi`` on
    PATH, one thread) and the working directory for ``verdi run``."""
    env = {
        **os.environ,
        "AIIDA_PATH": str(tmp_path / "aiida"),
        "OMP_NUM_THREADS": "1",
        # the examples' CalcJobs run the ``aiida-cgcnn`` executable of this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("AIIDA_PROFILE", None)
    work = tmp_path / "run"
    work.mkdir()
    (tmp_path / "aiida").mkdir()
    verdi = str(Path(sys.executable).parent / "verdi")
    presto = subprocess.run([verdi, "presto"], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert presto.returncode == 0, presto.stdout + presto.stderr
    return env, work
