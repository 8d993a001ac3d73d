"""The load benchmark (benchmarks/load.py) at a small size on the production profile (PostgreSQL +
RabbitMQ): 12 predictions and 2 trainings submitted at once to 2 workers all finish, every output
stored and parsed, no node lost.

Not on the embedded SQLite profile: there, whether a load holds depends on how busy the machine is
(SQLite's 5 s busy timeout; docs/benchmarks.md, "Load held"), which a CI test cannot fix; the
benchmark measures that limit instead."""

import importlib.util
import sys
from pathlib import Path

import psutil
import pytest

# the benchmark is a script, not a package module: load it by its path
_spec = importlib.util.spec_from_file_location(
    "benchmark_load", Path(__file__).parents[2] / "benchmarks/load.py"
)
assert _spec is not None and _spec.loader is not None
_load = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _load  # its dataclass looks its module up there
_spec.loader.exec_module(_load)
run_load = _load.run_load

pytestmark = [pytest.mark.production, pytest.mark.slow]


def test_small_load_on_two_workers_loses_nothing(stopped_daemon_client, aiida_localhost, tmp_path):
    result = run_load(
        n_predict=12, n_train=2, workers=2, epochs=2, timeout=600, localhost=aiida_localhost, tmp=tmp_path
    )
    assert result["problems"] == []
    assert result["states"] == {
        "finished_ok": 14,
        "failed": 0,
        "excepted": 0,
        "killed": 0,
        "active": 0,
        "missing": 0,
        "paused": 0,
    }
    assert result["calcjobs"] == 14  # one calculation per prediction and per training: no restart needed
    assert result["daemon_log"]["database is locked"] == 0 and result["daemon_log"]["Traceback"] == 0
    assert len(result["worker_peak_rss_mib"]) == 2 and result["wall_s"] > 0
    pid = stopped_daemon_client.get_daemon_pid()  # the run stops the daemon it started
    assert pid is None or not psutil.pid_exists(pid)
