"""Calcfunctions of the hyperparameter search: the held-out split, and the report of the trials."""

from __future__ import annotations

import io
import json
import tempfile
import typing as t
from pathlib import Path

from aiida import orm
from aiida.engine import calcfunction

from ...data.dataset import CrystalDatasetData
from ...training.local_search import plot_search, write_trials_csv
from ...training.search import SearchStudy, hold_out_test, nested

__all__ = ["search_report", "split_for_search"]


class SplitOutputs(t.TypedDict):
    search: CrystalDatasetData
    test: CrystalDatasetData


@calcfunction
def split_for_search(dataset: CrystalDatasetData, settings: orm.Dict) -> SplitOutputs:
    """``search`` (train and validation parts, all the trials see) and ``test`` (held out: in the
    provenance graph it leads only to the best model's evaluation), by ``settings['split']`` and
    ``settings['seed']``."""
    split = tuple(float(r) for r in settings["split"])
    search, test = hold_out_test(dataset.get_dataset(), (split[0], split[1], split[2]), int(settings["seed"]))
    return {"search": CrystalDatasetData.from_dataset(search), "test": CrystalDatasetData.from_dataset(test)}


class ReportOutputs(t.TypedDict):
    trials: orm.SinglefileData
    plot: orm.SinglefileData
    summary: orm.Dict


@calcfunction
def search_report(study: orm.SinglefileData, **evaluation: orm.Dict) -> ReportOutputs:
    """The trials as a CSV table (parameters, epochs, validation score, state, the calculations' pks),
    the plot (score against trial, Optuna's parameter importances) and a summary (parameters nested by
    section, importances as [name, value] pairs: an AiiDA Dict holds no dotted keys): the best trial,
    the states, the importances and the best model's test errors (``evaluation['test_errors']``)."""
    search = SearchStudy.from_dict(json.loads(study.get_content("r")))
    importances = search.importances()
    with tempfile.TemporaryDirectory() as folder:
        write_trials_csv(search, Path(folder) / "trials.csv")
        plot_search(search, importances, Path(folder) / "search.png")
        table = (Path(folder) / "trials.csv").read_bytes()
        png = (Path(folder) / "search.png").read_bytes()
    best = search.best()
    summary: dict[str, t.Any] = {
        "trials": len(search.records),
        "states": {s: search.count(s) for s in ("complete", "pruned", "failed", "running")},
        "epochs_trained": sum(r["epochs"] for r in search.records),
        "metric": search.metric,
        "importances": [[name, value] for name, value in importances.items()],
        "failed": {str(r["number"]): r.get("reason", "") for r in search.records if r["state"] == "failed"},
    }
    if best is not None:
        summary["best"] = {
            "trial": best["number"],
            "params": nested(best["params"]),
            f"val_{search.metric}": best["value"],
        }
    if "test_errors" in evaluation:
        summary["test"] = evaluation["test_errors"].get_dict()
    return {
        "trials": orm.SinglefileData(io.BytesIO(table), filename="trials.csv"),
        "plot": orm.SinglefileData(io.BytesIO(png), filename="search.png"),
        "summary": orm.Dict(summary),
    }
