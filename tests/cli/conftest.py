"""A small model trained once through the command, shared by the CLI tests that only need some checkpoint."""

from __future__ import annotations

import pytest

from tests.cli.helpers import cli, write_config
from tests.datadirs import write_valid_directory


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    return write_valid_directory(tmp_path_factory.mktemp("toy") / "data", n=9)


@pytest.fixture(scope="session")
def site_model(toy_dir, tmp_path_factory):
    """best.pt of a 2-epoch site-pooling model trained by ``aiida-cgcnn train`` on all 9 toy structures."""
    out = tmp_path_factory.mktemp("site-model")
    config = write_config(out / "config.json")
    run = cli(
        "train",
        toy_dir.path,
        "-o",
        out / "run",
        "--config",
        config,
        "--pooling",
        "site",
        "--epochs",
        "2",
        "--split",
        "1",
        "0",
        "0",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    return out / "run" / "best.pt"
