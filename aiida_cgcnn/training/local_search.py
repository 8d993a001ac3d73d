"""A hyperparameter search run in local processes: each trial's rung is an ``aiida-cgcnn train``
process (a continuation with ``--resume`` from its ``last.pt`` for a promoted trial), at most ``jobs``
at a time. The test part is cut off before the search and evaluated once, for the best trial.

The directory holds ``study.json`` (the whole state: a search stopped half-way goes on from it when run
again), ``data/search.npz`` and ``data/test.npz``, one ``trial-NNNN`` directory per trial,
``trials.csv``, ``search.png``, ``summary.json`` and ``best_model.pt``.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .checkpoint import write_atomically
from .search import SearchStudy, check_split, hold_out_test, search_train_settings, trial_parameters

__all__ = ["LocalSearch", "plot_search", "write_trials_csv"]


@dataclass
class _Segment:
    number: int
    epochs: int
    process: subprocess.Popen
    started: float


class LocalSearch:
    """Run ``study`` on ``data`` in ``directory``; see the module's docstring.

    ``base`` holds the settings every trial shares (``model``, ``train``, ``graph`` sections); the
    trials' sampled values override it. ``split`` is the whole data's train/val/test ratios.
    """

    def __init__(
        self,
        data: Path,
        directory: Path,
        study: SearchStudy,
        trials: int,
        jobs: int = 1,
        base: dict[str, Any] | None = None,
        split: tuple[float, float, float] = (0.6, 0.2, 0.2),
        workers: int = 1,
        echo: Callable[[str], None] = print,
    ):
        if trials < 1 or jobs < 1:
            raise ConfigError(f"need at least one trial and one job, not {trials} and {jobs}")
        check_split(split)
        self.data, self.directory, self.study = Path(data), Path(directory), study
        self.trials, self.jobs, self.workers, self.echo = trials, jobs, workers, echo
        self.split = split
        self.base = dict(base or {})
        train = dict(self.base.get("train", {}))
        for fixed in ("epochs", "train_ratio", "val_ratio", "test_ratio", "patience"):
            if fixed in train:
                raise ConfigError(f"the search sets train.{fixed}; leave it out of the base settings")
        self.seed = int(train.get("seed", study.seed))
        train.update(search_train_settings(split))  # the search part, in the same proportions
        train.setdefault("seed", self.seed)
        self.base["train"] = train
        self.running: list[_Segment] = []
        self._usage_before: dict[str, Any] = {}
        self._started = time.monotonic()

    # --- set-up ---------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.directory / "study.json"

    def _prepare_data(self) -> None:
        """Cut the test part off (the seed's split of the whole data), once; store both parts."""
        from .dataset import load_dataset

        folder = self.directory / "data"
        if (folder / "search.npz").is_file() and (folder / "test.npz").is_file():
            return
        folder.mkdir(parents=True, exist_ok=True)
        dataset, _ = load_dataset(self.data)
        if any(p.get("descriptors", "none") != "none" for p in self._descriptor_choices()):
            # computed once here, not once per trial: trials keep stored columns or drop them
            from ..descriptors.hybrid import attach_descriptors

            dataset, _ = attach_descriptors(dataset, "all", workers=self.workers)
        search, test = hold_out_test(dataset, self.split, self.seed)
        search.save(folder / "search.npz")
        test.save(folder / "test.npz")

    def _descriptor_choices(self) -> list[dict[str, Any]]:
        spec = self.study.space.get("descriptors")
        if spec is None:
            return [{"descriptors": self.base.get("descriptors", "none")}]
        return [{"descriptors": c} for c in spec.get("choices", [])]

    def _load_state(self) -> None:
        if not self.state_file.is_file():
            return
        saved = json.loads(self.state_file.read_text())
        mine = self.study.to_dict()
        differ = [k for k in mine if k != "records" and json.dumps(saved[k]) != json.dumps(mine[k])]
        if differ:
            raise ConfigError(
                f"{self.state_file} holds a search with other settings ({', '.join(differ)}); "
                "give another output directory, or the same settings to go on with it"
            )
        self.study.records = saved["records"]
        self.echo(f"going on with the search in {self.directory}: {len(self.study.records)} trials so far")

    def _save_state(self) -> None:
        write_atomically(self.state_file, json.dumps(self.study.to_dict(), indent=1))

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_state()
        self._prepare_data()
        # usage is written after every training, so a search stopped from outside keeps its accounting
        self._usage_before = self._earlier_usage()
        self._started = time.monotonic()
        # trials a stopped search left running go on from their last checkpoint
        pending = [
            (r["number"], self.study.rungs.after(r["epochs"]))
            for r in self.study.records
            if r["state"] == "running"
        ]
        try:
            while pending or self.running or len(self.study.records) < self.trials:
                while len(self.running) < self.jobs and (pending or len(self.study.records) < self.trials):
                    if pending:
                        number, epochs = pending.pop(0)
                    else:
                        number, epochs = self.study.ask()["number"], self.study.rungs.epochs[0]
                        self._save_state()
                    self._launch(number, epochs)
                finished = self._wait_one()
                decision = self._tell(finished)
                if decision == "continue":  # promoted trials go before new ones
                    pending.insert(0, (finished.number, self.study.rungs.after(finished.epochs)))
        finally:
            for segment in self.running:
                segment.process.terminate()
        return self._finish()

    def _trial_dir(self, number: int) -> Path:
        return self.directory / f"trial-{number:04d}"

    def _launch(self, number: int, epochs: int) -> None:
        record = self.study.record(number)
        folder = self._trial_dir(number)
        folder.mkdir(exist_ok=True)
        parameters = trial_parameters(record["params"], self.base)
        # every trial is planned for the last rung, its schedule too, and paused at each rung before
        parameters["train"]["epochs"] = self.study.rungs.max_epochs
        if epochs < self.study.rungs.max_epochs:
            parameters["train"]["stop_epoch"] = epochs
        (folder / "config.json").write_text(json.dumps(parameters, indent=1))
        command = [
            sys.executable, "-m", "aiida_cgcnn.cli", "train", str(self.directory / "data" / "search.npz"),
            "--config", str(folder / "config.json"), "-o", str(folder),
            "--workers", str(self.workers), "--cache-dir", str(self.directory / ".graph-cache"),
        ]  # fmt: skip
        if (folder / "last.pt").is_file():
            command += ["--resume", str(folder / "last.pt")]
        env = {**os.environ}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.jobs)))
        log = open(folder / "train.log", "ab")  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        record.setdefault("directory", folder.name)
        self.running.append(_Segment(number, epochs, process, time.time()))
        self.echo(f"trial {number}: training to epoch {epochs}")

    def _wait_one(self) -> _Segment:
        while True:
            for segment in self.running:
                if segment.process.poll() is not None:
                    self.running.remove(segment)
                    return segment
            time.sleep(0.2)

    def _tell(self, segment: _Segment) -> str:
        number, folder = segment.number, self._trial_dir(segment.number)
        record = self.study.record(number)
        record.setdefault("segments", []).append([segment.started, time.time(), segment.epochs])
        if segment.process.returncode != 0:
            status = _read_json(folder / "status.json")
            reason = (
                status.get("message") or f"exit code {segment.process.returncode} (see {folder}/train.log)"
            )
            decision = self.study.fail(number, reason)
            self.echo(f"trial {number}: failed: {reason}")
        else:
            metrics = _read_json(folder / "metrics.json")
            score = metrics.get("val", {}).get(self.study.metric)
            if score is None:
                decision = self.study.fail(number, f"no validation {self.study.metric} in metrics.json")
            else:
                epochs = int(metrics.get("epochs_run", segment.epochs))
                decision = self.study.tell(number, epochs, float(score))
                self.echo(
                    f"trial {number}: epoch {epochs}, validation {self.study.metric} {score:.4g}: {decision}"
                )
        self._record_usage()  # before the state: whoever sees the trial told sees its CPU time counted
        self._save_state()
        return decision

    # --- results --------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        write_trials_csv(self.study, self.directory / "trials.csv")
        importances = self.study.importances()
        plot_search(self.study, importances, self.directory / "search.png")
        best = self.study.best()
        usage = self._record_usage()
        summary: dict[str, Any] = {
            "trials": len(self.study.records),
            "states": {s: self.study.count(s) for s in ("complete", "pruned", "failed", "running")},
            "epochs_trained": sum(r["epochs"] for r in self.study.records),
            "wall_time_s": usage["wall_time_s"],
            "cpu_hours_children": usage["cpu_hours"],
            "invocations": usage["invocations"],
            "importances": importances,
            "metric": self.study.metric,
        }
        if best is not None:
            folder = self._trial_dir(best["number"])
            shutil.copyfile(folder / "best.pt", self.directory / "best_model.pt")
            summary["best"] = {
                "trial": best["number"],
                "params": best["params"],
                f"val_{self.study.metric}": best["value"],
                "test": self._evaluate_test(self.directory / "best_model.pt"),
            }
            test = summary["best"]["test"]
            self.echo(
                f"best trial {best['number']}: validation {self.study.metric} {best['value']:.4g}; "
                f"test MAE {test['mae']:.4g} on {test['n']} held-out structures"
            )
        write_atomically(self.directory / "summary.json", json.dumps(summary, indent=1, default=float))
        return summary

    def _earlier_usage(self) -> dict[str, Any]:
        """Wall time, the trainings' CPU time and the number of runs of the earlier runs of this search
        (a stopped search that went on)."""
        before = _read_json(self.directory / "usage.json")
        if not before:  # an earlier run's summary, before usage.json was kept
            summary = _read_json(self.directory / "summary.json")
            before = {
                "wall_time_s": summary.get("wall_time_s", 0.0),
                "cpu_hours": summary.get("cpu_hours_children", 0.0),
                "invocations": 1 if summary else 0,
            }
        return before

    def _record_usage(self) -> dict[str, Any]:
        """This run's figures so far added to the earlier runs': ``usage.json``."""
        before = self._usage_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = {
            "wall_time_s": before["wall_time_s"] + time.monotonic() - self._started,
            "cpu_hours": before["cpu_hours"] + (children.ru_utime + children.ru_stime) / 3600,
            "invocations": before["invocations"] + 1,
        }
        write_atomically(self.directory / "usage.json", json.dumps(usage, indent=1))
        return usage

    def _evaluate_test(self, checkpoint: Path) -> dict[str, float]:
        """The held-out part, predicted once by the best trial's model."""
        from ..predict import Predictor
        from .dataset import CrystalDataset

        test = CrystalDataset.load(self.directory / "data" / "test.npz")
        predictor = Predictor.from_checkpoint(checkpoint)
        prediction = predictor.predict(test, workers=self.workers)
        index = {i: k for k, i in enumerate(test.ids)}
        truth = test.targets[[index[i] for i in prediction.ids]]
        error = np.abs(np.asarray(prediction.values, dtype=float) - truth)
        return {
            "mae": float(error.mean()),
            "rmse": float(np.sqrt((error**2).mean())),
            "n": len(prediction.ids),
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def write_trials_csv(study: SearchStudy, path: Path) -> None:
    rows = study.rows()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_search(study: SearchStudy, importances: dict[str, float], path: Path) -> None:
    """Validation score against trial (complete and pruned, at the epochs each reached) and the
    parameters' importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [
            (r["number"], list(r["scores"].values())[-1])
            for r in study.records
            if r["state"] == state and r["scores"]
        ]
        if points:
            left.scatter(*zip(*points, strict=True), marker=marker, label=state)
    best = study.best()
    if best is not None:
        left.axhline(best["value"], color="grey", lw=0.8, ls="--", label=f"best (trial {best['number']})")
    left.set_xlabel("trial")
    left.set_ylabel(f"validation {study.metric}")
    left.legend()
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names])
        right.set_xlabel("importance (fANOVA)")
    else:
        right.text(0.5, 0.5, "importances need two complete trials", ha="center", va="center")
        right.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
