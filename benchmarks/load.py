"""Load: the daemon under many jobs submitted at once, on the embedded profile and on PostgreSQL + RabbitMQ.

N ``cgcnn.predict`` CalcJobs and M short trainings (``cgcnn.train`` TrainWorkChain, a few epochs) are
submitted at once to a daemon with W workers; K of the predictions (and the same share of the
trainings) go through the SLURM + sshd test cluster (``.ci/slurm-ssh/start.sh``) when it runs, the rest
to the localhost computer (``core.direct``). Inputs are small: 40 EMT alloys (8 atoms each) to train on,
4 to predict, a tiny CGCNN trained once in this process at the start, so each job's cost is mostly
starting a Python process that imports torch (about 1.6 s of CPU and 250 MB resident here).

Measured: the submit time, the wall time from the first submit to the last process terminated, jobs per
minute (submitted processes: predictions + work chains), the states at the end (finished ok, failed,
excepted, killed, still active: all but the first must be 0), and the nodes: every prediction has its
parsed ``predictions`` (one row per structure) and ``skipped``, every work chain its ``model`` and the
epochs it was asked for, every CalcJob of the run is one of those (nothing orphaned, nothing lost). Also
the peak resident set (VmHWM) of the daemon workers, the most ``aiida-cgcnn`` jobs running at once, and
the daemon log's ``database is locked`` / traceback lines.

The localhost computer's direct scheduler has no queue: every process a worker holds runs its job at
once. ``--slots`` (``daemon.worker_process_slots``, AiiDA's default 200) is then the queue; a guard stops
the daemon and the jobs when the machine's available memory falls under ``--min-free-gib`` and records it.

Profiles, each in a fresh temporary ``AIIDA_PATH`` (the user's configuration is never read or written):
``presto``: ``verdi presto --use-zeromq`` (SQLite + the embedded ZeroMQ broker); ``postgres``:
``verdi presto --use-postgres`` against the server of ``.ci/production/start.sh`` (its
``/tmp/aiida-cgcnn-production/env``), a fresh database, and RabbitMQ.

    nice -n 10 python benchmarks/load.py --profile presto [--predict 200 --train 20 --workers 2]
    nice -n 10 python benchmarks/load.py --profile postgres --slots 15
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the SLURM test cluster's computer is the integration tests' (tests/services.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import cluster_computer, cluster_env, env_file

BIN = Path(sys.executable).parent
# the daemon is started through this environment's ``verdi``
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"

SMALL_MODEL = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 32}
PRODUCTION_ENV = Path("/tmp/aiida-cgcnn-production/env")
LOG_PATTERNS = (
    "database is locked",
    "DetachedInstanceError: Instance",
    "SSH session not active",
    "Pausing after failed transport task",
    "Traceback",
    "TimeoutError",
)


@dataclass
class Inputs:
    local: Any  # InstalledCode on localhost
    slurm: Any | None  # InstalledCode on the SLURM cluster, if it runs
    train_dataset: Any
    predict_dataset: Any
    model: Any
    n_predict_structures: int


def _slurm_computer(workdir: Path) -> Any | None:
    """The SLURM + sshd test cluster as a computer polled every 2 s, or None when it does not run."""
    return cluster_computer(f"slurm-ssh-load-{workdir.name}", workdir, poll_interval=2.0)


def _code(computer: Any) -> Any:
    from aiida import orm

    return orm.InstalledCode(
        label=f"aiida-cgcnn-load-{computer.pk}",
        computer=computer,
        filepath_executable=str(BIN / "aiida-cgcnn"),
        default_calc_job_plugin="cgcnn.predict",
        prepend_text="export OMP_NUM_THREADS=1",
    ).store()


def prepare(localhost: Any, work: Path, use_slurm: bool, poll: float = 1.0) -> Inputs:
    """Codes, the two datasets and a tiny model trained once, here, on the training set."""
    from aiida import orm

    from aiida_cgcnn.calculations.functions import dataset_from_structures
    from aiida_cgcnn.data.model import ModelData
    from aiida_cgcnn.demo import emt_alloys
    from aiida_cgcnn.training.trainer import Trainer

    localhost.set_minimum_job_poll_interval(poll)
    localhost.set_default_mpiprocs_per_machine(1)
    slurm = _slurm_computer(work / "slurm-work") if use_slurm else None
    atoms, energies = emt_alloys(40, seed=7)
    train_dataset = dataset_from_structures(
        [orm.StructureData(ase=a).store() for a in atoms], energies, ["emt_energy"], ["eV/atom"]
    )
    atoms, energies = emt_alloys(4, seed=11)
    predict_dataset = dataset_from_structures(
        [orm.StructureData(ase=a).store() for a in atoms], energies, ["emt_energy"], ["eV/atom"]
    )
    result = Trainer(
        train_dataset.get_dataset(),
        work / "model",
        model_config=SMALL_MODEL,
        train_config={"epochs": 2, "batch_size": 8, "seed": 1},
        progress=False,
    ).fit()
    return Inputs(
        local=_code(localhost),
        slurm=_code(slurm) if slurm is not None else None,
        train_dataset=train_dataset,
        predict_dataset=predict_dataset,
        model=ModelData.get_or_create(result.best_checkpoint),
        n_predict_structures=len(atoms),
    )


class Monitor(threading.Thread):
    """Every ``interval`` s: VmHWM of the profile's daemon workers (MiB, per pid), the ``aiida-cgcnn``
    jobs running under ``workdir`` and the machine's available memory; below ``min_free_gib`` it calls
    ``on_low_memory`` once."""

    def __init__(self, profile: str, workdir: Path, min_free_gib: float, on_low_memory: Any) -> None:
        super().__init__(daemon=True)
        self.profile, self.workdir = profile, str(workdir)
        self.min_free_gib, self.on_low_memory = min_free_gib, on_low_memory
        self.worker_hwm_mib: dict[int, float] = {}
        self.peak_jobs = 0
        self.min_available_gib = math.inf
        self.low_memory = False
        self.stopped = threading.Event()

    def sample(self) -> None:
        import psutil

        jobs = 0
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = proc.info["cmdline"] or []
            try:
                if "worker" in cmd and "daemon" in cmd and self.profile in cmd:
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                    hwm = next(
                        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
                    )
                    self.worker_hwm_mib[proc.pid] = hwm / 1024
                elif any(part.endswith("aiida-cgcnn") for part in cmd[:2]) and proc.cwd().startswith(
                    self.workdir
                ):
                    jobs += 1
            except (psutil.Error, OSError, StopIteration):
                continue  # the process ended while it was read
        self.peak_jobs = max(self.peak_jobs, jobs)
        available = psutil.virtual_memory().available / 2**30
        self.min_available_gib = min(self.min_available_gib, available)
        if available < self.min_free_gib and not self.low_memory:
            self.low_memory = True
            self.on_low_memory()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.sample()


def _job_pids(workdir: Path) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(
                p.endswith("aiida-cgcnn") for p in (proc.info["cmdline"] or [])[:2]
            ) and proc.cwd().startswith(str(workdir)):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def _log_counts(path: Path, offset: int) -> dict[str, int]:
    """How often each of LOG_PATTERNS occurs in the daemon log after ``offset``."""
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return {pattern: text.count(pattern) for pattern in LOG_PATTERNS}


def submit_all(
    inputs: Inputs, n_predict: int, n_train: int, slurm_share: int, epochs: int
) -> dict[str, list]:
    """Submits the trainings spread evenly among the predictions; the first ``slurm_share`` predictions
    (and the same share of trainings) go to the SLURM cluster when it runs."""
    from aiida import orm
    from aiida.engine import submit

    from aiida_cgcnn.calculations.predict import PredictCalculation
    from aiida_cgcnn.workflows.train import TrainWorkChain

    slurm_trains = round(n_train * slurm_share / n_predict) if inputs.slurm is not None and n_predict else 0
    predict, train = [], []
    every = max(1, n_predict // max(1, n_train))
    for k in range(max(n_predict, n_train * every)):
        if k < n_predict:
            builder = PredictCalculation.get_builder()
            builder.code = inputs.slurm if (inputs.slurm is not None and k < slurm_share) else inputs.local
            builder.model = inputs.model
            builder.dataset = inputs.predict_dataset
            builder.device = "cpu"
            builder.metadata.options.max_wallclock_seconds = 1800
            predict.append(submit(builder).pk)
        if k % every == 0 and len(train) < n_train:
            builder = TrainWorkChain.get_builder()
            builder.train.code = inputs.slurm if len(train) < slurm_trains else inputs.local
            builder.train.dataset = inputs.train_dataset
            builder.train.parameters = orm.Dict(
                {"model": SMALL_MODEL, "train": {"epochs": epochs, "batch_size": 8, "seed": len(train)}}
            )
            builder.train.metadata.options.max_wallclock_seconds = 1800
            train.append(submit(builder).pk)
    return {"predict": predict, "train": train}


def states(pks: list[int]) -> dict[str, int]:
    """Process states of ``pks``: finished_ok, failed (finished, nonzero exit), excepted, killed, active,
    missing (no such node)."""
    from aiida import orm

    counts = dict.fromkeys(("finished_ok", "failed", "excepted", "killed", "active", "missing"), 0)
    query = orm.QueryBuilder().append(
        orm.ProcessNode,
        filters={"id": {"in": pks}},
        project=["id", "attributes.process_state", "attributes.exit_status"],
    )
    found = 0
    for _pk, state, exit_status in query.iterall():
        found += 1
        if state == "finished":
            counts["finished_ok" if exit_status == 0 else "failed"] += 1
        elif state in ("excepted", "killed"):
            counts[state] += 1
        else:
            counts["active"] += 1
    counts["missing"] = len(pks) - found
    return counts


def paused(since: Any) -> int:
    """Processes made since ``since`` that are paused (after a transport task failed 5 times): they wait
    for ``verdi process play``, never resume by themselves."""
    from aiida import orm

    query = orm.QueryBuilder().append(
        orm.ProcessNode,
        filters={
            "ctime": {">=": since},
            "attributes.paused": True,
            "attributes.process_state": {"in": ["created", "waiting", "running"]},
        },
    )
    return query.count()


def check_nodes(submitted: dict[str, list], inputs: Inputs, epochs: int, since: Any) -> list[str]:
    """What is missing or wrong in the stored nodes; empty when every output is stored and parsed and
    every CalcJob made since ``since`` belongs to a submitted process."""
    import numpy as np
    from aiida import orm

    problems: list[str] = []
    for pk in submitted["predict"]:
        node = orm.load_node(pk)
        if not node.is_finished_ok:
            problems.append(f"predict<{pk}>: {node.process_state} {node.exit_status} {node.exit_message}")
            continue
        outputs = node.outputs
        for name in ("predictions", "skipped", "retrieved", "remote_folder"):
            if name not in outputs:
                problems.append(f"predict<{pk}>: no output {name}")
        if "predictions" in outputs:
            values = outputs.predictions.get_array("values")
            if values.shape[0] != inputs.n_predict_structures or not np.isfinite(values).all():
                problems.append(f"predict<{pk}>: predictions of shape {values.shape}, not all finite")
    expected_calcs = set(submitted["predict"])
    for pk in submitted["train"]:
        node = orm.load_node(pk)
        expected_calcs.update(child.pk for child in node.called)
        if not node.is_finished_ok:
            problems.append(f"train<{pk}>: {node.process_state} {node.exit_status} {node.exit_message}")
            continue
        if "model" not in node.outputs:
            problems.append(f"train<{pk}>: no output model")
        elif node.outputs.metrics["epochs_run"] != epochs:
            problems.append(f"train<{pk}>: {node.outputs.metrics['epochs_run']} epochs, not {epochs}")
    calcs = orm.QueryBuilder().append(
        orm.CalcJobNode, filters={"ctime": {">=": since}}, project=["id", "attributes.process_state"]
    )
    made = dict(calcs.all())
    for pk in sorted(set(made) - expected_calcs):
        problems.append(f"CalcJob<{pk}> belongs to no submitted process")
    for pk in sorted(expected_calcs - set(made)):
        problems.append(f"CalcJob<{pk}> of a submitted process is not stored")
    for pk, state in made.items():
        if state != "finished":
            problems.append(f"CalcJob<{pk}> ended {state}")
    return problems


def restart(client: Any, workers: int, monitor: Monitor) -> None:
    """``verdi daemon restart`` for a wedged daemon: stop (its controller may not answer; then its
    workers are ended by pid), then start ``workers`` workers."""
    stop(client, monitor)
    client.start_daemon(number_workers=workers)


def stop(client: Any, monitor: Monitor) -> None:
    """Stops the daemon; when its controller does not answer (a loaded machine), ends it and its
    workers by pid."""
    import psutil
    from aiida.engine.daemon.client import DaemonException

    try:
        client.stop_daemon(wait=True)
    except DaemonException:
        pass
    for pid in [client.get_daemon_pid(), *monitor.worker_hwm_mib]:
        try:  # only this profile's daemon processes (a pid may have been reused)
            if pid is not None and monitor.profile in psutil.Process(pid).cmdline():
                psutil.Process(pid).kill()
        except psutil.Error:
            pass
    deadline = time.perf_counter() + 120
    while client.is_daemon_running and time.perf_counter() < deadline:
        pid = client.get_daemon_pid()
        if pid is not None and not psutil.pid_exists(pid):  # ended by pid above: its pid file stays behind
            Path(client.circus_pid_file).unlink(missing_ok=True)
            break
        time.sleep(1.0)


def run_load(
    n_predict: int,
    n_train: int,
    workers: int,
    slurm_share: int = 0,
    slots: int | None = None,
    epochs: int = 3,
    timeout: float = 3600.0,
    stall: float = 900.0,
    min_free_gib: float = 3.0,
    poll: float = 1.0,
    localhost: Any = None,
    tmp: Path | None = None,
    recover: bool = False,
) -> dict[str, Any]:
    """Runs the load on the loaded profile (its daemon must be stopped; it is started with ``workers``
    workers and stopped at the end) and returns the measurements and the problems found. It stops
    waiting after ``timeout`` s, or when no process has terminated for ``stall`` s (120 s once some are
    paused: nothing resumes them); with ``recover`` it then restarts the daemon once, as a user would, and
    waits again. ``localhost``:
    the core.local + core.direct computer [the one ``verdi presto`` made, else a new one]; ``tmp``: where
    the run's folder (the model, the SLURM work directory) goes."""
    from aiida import orm
    from aiida.common import timezone
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config

    profile = get_manager().get_profile()
    assert profile is not None
    config = get_config()
    if slots is not None:
        config.set_option("daemon.worker_process_slots", slots, scope=profile.name)
        config.store()
    slots_used = config.get_option("daemon.worker_process_slots", scope=profile.name)
    journal = _journal_mode(_sqlite_database(profile.storage_config))
    if localhost is None:
        localhost = orm.Computer.collection.find(filters={"label": "localhost"})
        localhost = localhost[0] if localhost else None
    work = Path(tempfile.mkdtemp(prefix="load-", dir=tmp))
    if localhost is None or localhost.transport_type != "core.local":
        localhost = orm.Computer(
            label=f"localhost-load-{work.name}",
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(work / "local-work"),
        ).store()
        localhost.configure(safe_interval=0)
    use_slurm = slurm_share > 0 and cluster_env() is not None
    started = time.perf_counter()
    inputs = prepare(localhost, work, use_slurm, poll)
    prepare_s = time.perf_counter() - started

    client = get_daemon_client(profile.name)
    if client.is_daemon_running:
        raise RuntimeError(f"the daemon of profile {profile.name} runs already; stop it first")
    log = Path(client.daemon_log_file)
    log_offset = log.stat().st_size if log.is_file() else 0
    client.start_daemon(number_workers=workers)

    def stop_everything() -> None:  # the memory guard: the daemon, then the jobs it left running
        stop(client, monitor)
        for pid in _job_pids(Path(localhost.get_workdir())):
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    monitor = Monitor(profile.name, Path(localhost.get_workdir()), min_free_gib, stop_everything)
    monitor.sample()
    monitor.start()
    since = timezone.now()
    try:
        t0 = time.perf_counter()
        submitted = submit_all(inputs, n_predict, n_train, slurm_share if use_slurm else 0, epochs)
        submit_s = time.perf_counter() - t0
        pks = submitted["predict"] + submitted["train"]
        deadline = t0 + timeout
        stalled, done, changed = False, -1, time.perf_counter()
        restarted_s: float | None = None
        while time.perf_counter() < deadline and not monitor.low_memory:
            counts = states(pks)
            if counts["active"] == 0:
                break
            now = time.perf_counter()
            if counts["active"] != done:
                done, changed = counts["active"], now
            elif now - changed > (120.0 if paused(since) else stall):
                stalled = True
                if not recover or restarted_s is not None:
                    break
                restarted_s = round(now - t0, 1)
                restart(client, workers, monitor)
                changed = time.perf_counter()
            time.sleep(5.0)
        # the last process's own end, not when the poll saw it
        last_end = (
            orm.QueryBuilder()
            .append(orm.ProcessNode, filters={"id": {"in": pks}}, project="mtime")
            .order_by({orm.ProcessNode: {"mtime": "desc"}})
            .first()
        )
        wall_s = (last_end[0] - since).total_seconds() if last_end else math.nan
        counts = states(pks)
        counts["paused"] = paused(since)
    finally:
        monitor.stopped.set()
        monitor.join(timeout=30)
        stop(client, monitor)
    problems = check_nodes(submitted, inputs, epochs, since)
    if monitor.low_memory:
        problems.insert(0, f"stopped: available memory under {min_free_gib} GiB")
    if counts["active"]:
        why = f"nothing terminated for {stall} s (120 s once some are paused)" if stalled else f"{timeout} s"
        problems.insert(
            0, f"{counts['active']} processes still active ({counts['paused']} paused) after {why}"
        )
    calcjobs = orm.QueryBuilder().append(orm.CalcJobNode, filters={"ctime": {">=": since}}).count()
    return {
        "profile": {
            "name": profile.name,
            "storage": profile.storage_backend,
            "broker": profile.process_control_backend,
        },
        "sqlite_journal_mode": journal,
        "workers": workers,
        "worker_process_slots": slots_used,
        "predict": n_predict,
        "train": n_train,
        "train_epochs": epochs,
        "slurm_share": {
            "predict": slurm_share if use_slurm else 0,
            "train": sum(
                1
                for pk in submitted["train"]
                if orm.load_node(pk).inputs.train.code.pk == getattr(inputs.slurm, "pk", -1)
            ),
        },
        "calcjobs": calcjobs,
        "prepare_s": round(prepare_s, 2),
        "submit_s": round(submit_s, 2),
        "wall_s": round(wall_s, 1),
        # processes that finished, per minute of the whole run (a stalled run's rate is not its load's)
        "jobs_per_minute": round(60 * counts["finished_ok"] / wall_s, 1) if wall_s > 0 else None,
        "states": counts,
        "stalled": stalled,
        "daemon_restarted_at_s": restarted_s,
        "worker_peak_rss_mib": [round(v, 1) for v in monitor.worker_hwm_mib.values()],
        "peak_jobs_running": monitor.peak_jobs,
        "min_available_gib": round(monitor.min_available_gib, 2),
        "daemon_log": _log_counts(log, log_offset),
        "problems": problems[:50],
        "n_problems": len(problems),
    }


def _sqlite_database(profile_config: dict[str, Any]) -> Path | None:
    """The SQLite file of a ``core.sqlite_dos`` storage configuration, else None."""
    folder = profile_config.get("filepath")
    return Path(folder) / "database.sqlite" if folder else None


def _journal_mode(database: Path | None, set_to: str | None = None) -> str | None:
    """SQLite's journal mode of ``database`` (persistent in the file), after setting it to ``set_to``."""
    import sqlite3

    if database is None or not database.is_file():
        return None
    with sqlite3.connect(database) as connection:
        if set_to:
            connection.execute(f"PRAGMA journal_mode={set_to}")
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


def _psql(server: dict[str, str], sql: str) -> None:
    env = {**os.environ, "PGPASSWORD": server["PGPASSWORD"]}
    command = [
        "psql",
        "-h",
        server["PGHOST"],
        "-p",
        server["PGPORT"],
        "-U",
        server["PGUSER"],
        "-d",
        "postgres",
    ]
    subprocess.run([*command, "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True, capture_output=True)


def _fresh_profile(
    kind: str, root: Path, wal: bool = False
) -> tuple[dict[str, str], str, dict[str, str] | None]:
    """A new profile in its own configuration folder under ``root``: the environment naming it, its
    name and, for ``postgres``, the server (its database is named like the profile). ``wal``: switch
    presto's SQLite file to write-ahead logging (readers then no longer block the writer)."""
    env = {**os.environ, "AIIDA_PATH": str(root / "aiida"), "OMP_NUM_THREADS": "1"}
    env.pop("AIIDA_PROFILE", None)
    (root / "aiida").mkdir(parents=True)
    name = f"load_{kind}_{root.name.rsplit('-', 1)[-1].lower()}"
    verdi = str(BIN / "verdi")
    server = None
    if (
        kind == "presto"
    ):  # SQLite + ZeroMQ, as a new user has it (without --use-zeromq presto takes RabbitMQ when it runs)
        commands = [[verdi, "presto", "--profile-name", name, "--use-zeromq"]]
    else:
        server = env_file(PRODUCTION_ENV)
        if server is None:
            sys.exit(f"no PostgreSQL + RabbitMQ: run .ci/production/start.sh (looked for {PRODUCTION_ENV})")
        _psql(server, f'CREATE DATABASE "{name}"')
        commands = [
            [verdi, "profile", "setup", "core.psql_dos", "-n", "--profile-name", name, "--set-as-default",
             "--email", "load@localhost", "--first-name", "Load", "--last-name", "Benchmark",
             "--institution", "aiida-cgcnn", "--database-hostname", server["PGHOST"],
             "--database-port", server["PGPORT"], "--database-username", server["PGUSER"],
             "--database-password", server["PGPASSWORD"], "--database-name", name,
             "--repository-uri", f"file://{root / 'repository'}", "--broker", "core.rabbitmq"],
            [verdi, "profile", "configure-broker", "core.rabbitmq", name, "-f", "-n",
             "--broker-host", server["RABBITMQ_HOST"], "--broker-port", server["RABBITMQ_PORT"],
             "--broker-username", server.get("RABBITMQ_USER", "guest"),
             "--broker-password", server.get("RABBITMQ_PASSWORD", "guest"),
             "--broker-virtual-host", server.get("RABBITMQ_VHOST", "/")],
        ]  # fmt: skip
    for command in commands:
        done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command[:4])} failed:\n{done.stdout}\n{done.stderr}")
    if kind == "presto" and wal:  # no process has the new database open yet
        for database in (root / "aiida").rglob("database.sqlite"):
            _journal_mode(database, "WAL")
    return env, name, server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=["presto", "postgres", "both"], default="presto")
    parser.add_argument("--predict", type=int, default=200)
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slurm-share", type=int, default=20, help="predictions through SLURM (if it runs)")
    parser.add_argument("--slots", type=int, default=None, help="daemon.worker_process_slots [AiiDA's: 200]")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--min-free-gib", type=float, default=3.0)
    parser.add_argument("--stall", type=float, default=900.0, help="give up when nothing ends for this long")
    parser.add_argument("--recover", action="store_true", help="restart the daemon once when it stalls")
    parser.add_argument("--sqlite-wal", action="store_true", help="presto: SQLite in write-ahead-log mode")
    parser.add_argument("--name", default=None, help="results file name [load_<profile>]")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {
        "n_predict": args.predict,
        "n_train": args.train,
        "workers": args.workers,
        "slurm_share": args.slurm_share,
        "slots": args.slots,
        "epochs": args.epochs,
        "timeout": args.timeout,
        "min_free_gib": args.min_free_gib,
        "stall": args.stall,
        "recover": args.recover,
    }
    if args.inner:  # in the fresh profile's environment: run and print the result as the last line
        from aiida import load_profile
        from aiida.manage.configuration import get_config

        profile = load_profile()
        # the daemon's controller answers a loaded 2-core machine slower than the default 2 s
        get_config().set_option("daemon.timeout", 60, scope=profile.name)
        get_config().store()
        print(json.dumps(run_load(**options, tmp=Path(os.environ["AIIDA_PATH"]).parent)))
        return
    from common import write_results

    kinds = ["presto", "postgres"] if args.profile == "both" else [args.profile]
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"aiida-load-{kind}-") as tmp:
            env, name, server = _fresh_profile(kind, Path(tmp), args.sqlite_wal)
            print(
                f"[{kind}] profile {name} in {env['AIIDA_PATH']}: "
                f"{args.predict} predict + {args.train} train, {args.workers} workers",
                flush=True,
            )
            inner = [sys.executable, __file__, "--inner", *sys.argv[1:]]
            done = subprocess.run(inner, env=env, capture_output=True, text=True)
            if server is not None:  # the profile was temporary; its database goes with it
                _psql(server, f'DROP DATABASE "{name}"')
            if done.returncode != 0:
                sys.exit(f"[{kind}] the run failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"[{kind}] submit {result['submit_s']} s, wall {result['wall_s']} s, "
                f"{result['jobs_per_minute']} jobs/min, states {result['states']}, "
                f"problems {result['n_problems']}, worker peak RSS {result['worker_peak_rss_mib']} MiB, "
                f"peak jobs at once {result['peak_jobs_running']}, daemon log {result['daemon_log']}"
            )
            for problem in result["problems"][:10]:
                print(f"  {problem}")
            write_results(args.name or f"load_{kind}", {"command": " ".join(sys.argv), **result})


if __name__ == "__main__":
    main()
