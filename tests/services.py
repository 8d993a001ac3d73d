"""The test services of ``.ci/``, for the tests and ``benchmarks/load.py``: the settings files their
start scripts write, and the SLURM + sshd cluster of ``.ci/slurm-ssh/start.sh`` as an AiiDA computer
(core.ssh + core.slurm)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLUSTER = Path(os.environ.get("SLURM_SSH_DIR", "/tmp/aiida-cgcnn-slurm"))


def env_file(path: Path) -> dict[str, str] | None:
    """The KEY=value lines a start script wrote, or None when it has not (or its stop script ran)."""
    if not path.is_file():
        return None
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def cluster_env() -> dict[str, str] | None:
    """The cluster's settings (its directory and the sshd's port), or None when it does not run."""
    return env_file(CLUSTER / "env")


def cluster_computer(label: str, workdir: Path, poll_interval: float = 1.0) -> Any:
    """A stored ``orm.Computer`` that reaches the cluster as root through its sshd, in a plain shell;
    None when the cluster does not run. AiiDA is imported here: the load benchmark chooses its profile
    first."""
    from aiida import orm

    env = cluster_env()
    if env is None:
        return None
    computer = orm.Computer(
        label=label,
        hostname="127.0.0.1",
        transport_type="core.ssh",
        scheduler_type="core.slurm",
        workdir=str(workdir),
    ).store()
    computer.set_shebang("#!/bin/bash")
    computer.set_default_mpiprocs_per_machine(1)
    computer.set_minimum_job_poll_interval(poll_interval)
    computer.configure(
        username="root",
        port=int(env["AIIDA_CGCNN_SLURM_PORT"]),
        look_for_keys=False,
        key_filename=str(Path(env["AIIDA_CGCNN_SLURM_DIR"]) / "id_ed25519"),
        allow_agent=False,
        key_policy="AutoAddPolicy",
        timeout=30,
        safe_interval=0.0,
        use_login_shell=False,
    )
    return computer
