"""Fixtures of the active-learning and table-reference tests: the shared AiiDA fixtures (real profile,
the real ``aiida-cgcnn`` code on localhost) and phonondb's 300 K table."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.aiida_fixtures import *  # noqa: F403


@pytest.fixture(scope="session")
def phonondb_table(shared_data):
    """The path of phonondb's 300 K table and its rows by mp id (skipped when the data is absent)."""
    path = shared_data / "phonondb" / "phonondb-300K.jsonl.gz"
    if not path.is_file():
        pytest.skip("phonondb's 300 K table is absent from the real data")
    with gzip.open(path, "rt") as handle:
        rows = {record["mp_id"]: record for record in map(json.loads, handle)}
    return path, rows
