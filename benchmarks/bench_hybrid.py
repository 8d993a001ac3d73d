"""The hybridization paper's Table 2 on phonondb: U and Cv at 300 K per mole of primitive cells.

Descriptors-only random forest, CGCNN and de-CGCNN (all 28 descriptors), mean and sum pooling, one
two-target model (U, Cv) each, the paper's random 60/20/20 split (seed 0, the same test structures
in every column); materials with imaginary modes below -0.5 THz are left out. Stages::

    python benchmarks/bench_phonons.py prepare # the dataset and its descriptors (runs/phonons)
    python benchmarks/bench_hybrid.py run      # 4 trainings, the random forest
    python benchmarks/bench_hybrid.py report   # table from the test predictions -> results/hybrid.json

``run`` calls the ``aiida-cgcnn`` command, as a user would; ``--epochs`` (100) and ``--threads``
set the budget. ``report`` scores every column from its ``test_predictions.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")
TARGETS = {"U": "kJ/mol", "Cv": "J/(K mol)"}
#: column -> (train --descriptors, --pooling); the random forest is column "rf"
MODELS = {
    "cgcnn-mean": ("none", "mean"),
    "cgcnn-sum": ("none", "sum"),
    "de-cgcnn-mean": ("all", "mean"),
    "de-cgcnn-sum": ("all", "sum"),
}
#: the paper's Tables 1 and 2 (MP phonons, per cell), MAE/MAD: (U, Cv); it has no Cv row for sum pooling
PAPER = {
    "rf": (0.140, 0.111),
    "cgcnn-mean": (0.670, 0.759),
    "cgcnn-sum": (0.254, None),
    "de-cgcnn-mean": (0.060, 0.058),
    "de-cgcnn-sum": (0.060, None),
}


def _cli(*args: str) -> None:
    print("aiida-cgcnn " + " ".join(args), flush=True)
    subprocess.run([EXECUTABLE, *args], check=True)


def run(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    data_file = Path(args.data)
    if not data_file.exists():
        sys.exit(f"{data_file} is missing: run `python benchmarks/bench_phonons.py prepare` first")
    for name, (descriptors, pooling) in MODELS.items():
        if (work / name / "metrics.json").exists():
            continue
        _cli(
            "train",
            str(data_file),
            "-o",
            str(work / name),
            "--descriptors",
            descriptors,
            "--pooling",
            pooling,
            "--epochs",
            str(args.epochs),
            "--seed",
            "0",
            "--device",
            args.device,
            "--workers",
            str(args.workers),
            "--skip-invalid",
            "--no-progress",
        )
    split = str(work / "cgcnn-sum" / "best.pt")
    _cli(
        "baseline", str(data_file), "-o", str(work / "rf"), "--split-from", split, "--jobs", str(args.workers)
    )


def _score(path: Path) -> dict[str, dict[str, float]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = {"n_test": len(rows), "ids": sorted(r["id"] for r in rows)}
    for target in TARGETS:
        true = np.array([float(r[f"{target}_true"]) for r in rows])
        pred = np.array([float(r[f"{target}_pred"]) for r in rows])
        mae = float(np.mean(np.abs(pred - true)))
        mad = float(np.mean(np.abs(true - true.mean())))
        scores[target] = {"mae": mae, "mad": mad, "mae_over_mad": mae / mad}
    return scores


def report(args) -> None:
    work = Path(args.work)
    columns = {}
    for name in ["rf", *MODELS]:
        path = work / name / "test_predictions.csv"
        if path.exists():
            columns[name] = _score(path)
            metrics_file = work / name / "metrics.json"
            if metrics_file.exists():
                metrics = json.loads(metrics_file.read_text())
                columns[name]["epochs_run"] = metrics.get("epochs_run")
                columns[name]["best_epoch"] = metrics.get("best_epoch")
                columns[name]["wall_time_s"] = metrics.get("wall_time_s")
    if not columns:
        sys.exit(f"nothing to report under {work}")
    test_sets = {tuple(c.pop("ids")) for c in columns.values()}
    if len(test_sets) != 1:
        sys.exit("the columns were tested on different structures; use one dataset file and seed")
    print("| model | U MAE (kJ/mol) | U MAE/MAD | Cv MAE (J/(K mol)) | Cv MAE/MAD | paper MAE/MAD (U, Cv) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, scores in columns.items():
        paper = ", ".join("–" if v is None else f"{v:.3f}" for v in PAPER[name])
        print(
            f"| {name} | {scores['U']['mae']:.2f} | {scores['U']['mae_over_mad']:.3f} | "
            f"{scores['Cv']['mae']:.2f} | {scores['Cv']['mae_over_mad']:.3f} | {paper} |"
        )
    first = next(iter(columns.values()))
    print(
        f"{first['n_test']} test materials; MAD of U {first['U']['mad']:.1f} kJ/mol, "
        f"of Cv {first['Cv']['mad']:.1f} J/(K mol)"
    )
    write_results("hybrid", {"work": str(work), "units": TARGETS, "columns": columns, "paper": PAPER})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["run", "report"])
    parser.add_argument("--work", default="runs/hybrid", help="Working folder [runs/hybrid].")
    parser.add_argument(
        "--data",
        default="runs/phonons/phonondb-train-desc.npz",
        help="Dataset with stored descriptors, from bench_phonons.py prepare (stable materials, without "
        "the force-set archives the phonon benchmark holds out).",
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per training [1].")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    {"run": run, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
