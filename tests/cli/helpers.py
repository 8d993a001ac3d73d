"""Run the installed ``aiida-cgcnn`` command as a subprocess: real exit codes, real files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.builders import SMALL_MODEL

EXECUTABLE = Path(sys.executable).parent / "aiida-cgcnn"

SMALL_CONFIG = {"model": SMALL_MODEL}


def cli(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [str(EXECUTABLE)] if EXECUTABLE.exists() else [sys.executable, "-m", "aiida_cgcnn.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def write_config(path: Path, **sections) -> Path:
    config = {**SMALL_CONFIG, **sections}
    path.write_text(json.dumps(config))
    return path


def status(directory: Path) -> dict:
    return json.loads((directory / "status.json").read_text())


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV the commands write (a predictions CSV's ``# units`` row left out), as text."""
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("id") != "# units"]


def skipped_ids(path: Path) -> list[str]:
    return [line.split("\t", 1)[0] for line in path.read_text().splitlines() if line.strip()]
