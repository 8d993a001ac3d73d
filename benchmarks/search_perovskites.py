"""Hyperparameter search on the shared perovskites (heat of formation, eV/cell), the paper's 60/20/20
split of the accuracy benchmark (seed 0: the same held-out test part as its reference CGCNN, 0.0856 -
0.087 eV/cell): Optuna's TPE sampler with successive halving against random sampling without pruning.

    python benchmarks/search_perovskites.py [--out runs/search-perovskites] [--runs tpe-asha random-none]

Each run is an ``aiida-cgcnn search`` in its own directory under ``--out``; running the script again
goes on with unfinished runs (their ``study.json``) and only reads finished ones. The test part is
evaluated once per run, for its best trial. Results: ``benchmarks/results/search_perovskites.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import RESULTS, load, machine, write_results

#: name -> the search's options (the space: the CGCNN paper's Table S1 ranges, search_spaces.yaml)
RUNS = {
    "tpe-asha": "--sampler tpe --pruner asha --trials 24 --min-epochs 10 --max-epochs 90".split(),
    "random-none": "--sampler random --pruner none --trials 10 --min-epochs 10 --max-epochs 90".split(),
    "tpe-asha-270": "--sampler tpe --pruner asha --trials 40 --min-epochs 10 --max-epochs 270".split(),
    "tpe-asha-540": "--sampler tpe --pruner asha --trials 36 --min-epochs 20 --max-epochs 540".split(),
    # tpe-asha-540's budget (5,160 epochs) spent without pruning: 10 full trainings, 5,400 epochs
    "random-none-540": "--sampler random --pruner none --trials 10 --min-epochs 20 --max-epochs 540".split(),
}
REFERENCE = {"mae_eV_per_cell": 0.0856, "what": "the reference CGCNN on this split (the issue); ours: 0.087"}
GOAL = 0.075


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/search-perovskites"))
    parser.add_argument("--runs", nargs="+", default=["tpe-asha", "random-none"], choices=sorted(RUNS))
    parser.add_argument("--jobs", type=int, default=2, help="Trainings at a time per run [2].")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "perovskites.npz"
    if not data.is_file():
        load("perovskites").save(data)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # runs measured earlier stay in the results file beside the ones measured now
    previous = RESULTS / "search_perovskites.json"
    results = json.loads(previous.read_text())["runs"] if previous.is_file() else {}
    for name in args.runs:
        command = [
            sys.executable, "-m", "aiida_cgcnn.cli", "search", str(data), "-o", str(args.out / name),
            "--space", "cgcnn", "--jobs", str(args.jobs), "--seed", str(args.seed), *RUNS[name],
        ]  # fmt: skip
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, env=env)
        summary = json.loads((args.out / name / "summary.json").read_text())
        best = summary["best"]
        results[name] = {
            "options": RUNS[name],
            "trials": summary["trials"],
            "states": summary["states"],
            "epochs_trained": summary["epochs_trained"],
            "cpu_hours": summary["cpu_hours_children"],
            "wall_time_s": summary["wall_time_s"],
            "best_trial": best["trial"],
            "best_params": best["params"],
            "best_val_mae": best["val_mae"],
            "test": best["test"],
            "goal_met": best["test"]["mae"] <= GOAL,
            "importances": summary["importances"],
        }
        print(
            f"{name}: {summary['trials']} trials {summary['states']}, {summary['epochs_trained']} epochs, "
            f"{summary['cpu_hours_children']:.2f} CPU-h; best trial {best['trial']}: validation MAE "
            f"{best['val_mae']:.4f}, test MAE {best['test']['mae']:.4f} eV/cell (goal <= {GOAL})",
            flush=True,
        )
    path = write_results(
        "search_perovskites",
        {
            "benchmark": "search_perovskites",
            "machine": machine(),
            "data": "castelli-perov5-part-a (3,787), heat_all, eV/cell; split 60/20/20, seed 0",
            "reference": REFERENCE,
            "goal_test_mae": GOAL,
            "runs": results,
        },
    )
    print(f"results -> {path}")


if __name__ == "__main__":
    main()
