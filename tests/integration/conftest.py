import fcntl
import os
from pathlib import Path

import pytest

from tests.aiida_fixtures import *  # noqa: F403

#: Tests that stop the cluster's SSH server hold this lock exclusively, every other SLURM test shares
#: it: with ``-n 2 --dist loadfile`` another file's SLURM test would otherwise lose its connections to
#: the outage (and wait out aiida's 20 s retry backoff, or fail).
SSH_OUTAGE = "ssh_outage"


@pytest.fixture(autouse=True)
def _cluster_lock(request):
    if request.node.get_closest_marker("slurm") is None:
        yield
        return
    cluster = Path(os.environ.get("SLURM_SSH_DIR", "/tmp/aiida-cgcnn-slurm"))
    if not cluster.is_dir():  # the test skips (or fails under CI) by itself
        yield
        return
    exclusive = request.node.get_closest_marker(SSH_OUTAGE) is not None
    with open(cluster / "tests.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
