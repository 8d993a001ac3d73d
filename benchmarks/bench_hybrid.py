"""The hybridization paper's Table 2 on phonondb: U and Cv at 300 K per mole of primitive cells.

Descriptors-only random forest, CGCNN and de-CGCNN (all 28 descriptors), ALIGNN and de-ALIGNN, mean
and sum pooling, one two-target model (U, Cv) each, the paper's random 60/20/20 split (seed 0, the
same test structures in every column); materials with imaginary modes below -0.5 THz are left out. Stages::

    python benchmarks/bench_phonons.py prepare # the dataset and its descriptors (runs/phonons)
    python benchmarks/bench_hybrid.py run      # 8 trainings, the random forest
    python benchmarks/bench_hybrid.py report   # table from the test predictions -> results/hybrid.json

The same for a second property, ``--dataset mp_log10_K`` (Materials Project binaries, log10 of the
bulk modulus, the paper's Table 1 "K"; mean pooling only, the property being intensive)::

    python benchmarks/bench_hybrid.py prepare --dataset mp_log10_K   # dataset and descriptors
    python benchmarks/bench_hybrid.py run --dataset mp_log10_K
    python benchmarks/bench_hybrid.py report --dataset mp_log10_K    # -> results/hybrid_mp_log10_K.json

``run`` calls the ``aiida-cgcnn`` command, as a user would; ``--epochs`` (100), ``--threads`` and
``--columns`` (some of them, e.g. one per core) set the budget. ALIGNN columns train with the
paper's recipe (``--preset alignn-paper``) for ``--alignn-epochs`` (25) epochs, ``--alignn-width``
(256 is the paper's; 64, with embedding 32 and a 64-wide head, fits a CPU) and ``--precision``
(``bfloat16-mixed``). ``report`` scores every column from its ``test_predictions.csv`` and keeps
the columns of an earlier report whose runs are not in ``--work`` (checked to share the test set:
same size, same MAD of U and Cv).
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
from common import RESULTS, load, write_results

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")
#: column -> (architecture, train --descriptors, --pooling); the random forest is column "rf"
MODELS = {
    "cgcnn-mean": ("cgcnn", "none", "mean"),
    "cgcnn-sum": ("cgcnn", "none", "sum"),
    "de-cgcnn-mean": ("cgcnn", "all", "mean"),
    "de-cgcnn-sum": ("cgcnn", "all", "sum"),
    "alignn-mean": ("alignn", "none", "mean"),
    "alignn-sum": ("alignn", "none", "sum"),
    "de-alignn-mean": ("alignn", "all", "mean"),
    "de-alignn-sum": ("alignn", "all", "sum"),
}
#: the paper's Tables 1 and 2 (MP phonons, per cell), MAE/MAD: (U, Cv); it has no Cv row for sum pooling
PAPER_PHONONS = {
    "rf": (0.140, 0.111),
    "cgcnn-mean": (0.670, 0.759),
    "cgcnn-sum": (0.254, None),
    "de-cgcnn-mean": (0.060, 0.058),
    "de-cgcnn-sum": (0.060, None),
    "alignn-mean": (0.534, 0.632),
    "alignn-sum": (0.268, None),
    "de-alignn-mean": (0.101, 0.089),
    "de-alignn-sum": (0.073, None),
}
#: the paper's Table 1, K (mean pooling), MAE/MAD
PAPER_K = {
    "rf": (0.348,),
    "cgcnn-mean": (0.217,),
    "de-cgcnn-mean": (0.215,),
    "alignn-mean": (0.204,),
    "de-alignn-mean": (0.206,),
}
#: per dataset: targets and units, poolings, the paper's values, default data file and working folder
DATASETS = {
    "phonondb": {
        "targets": {"U": "kJ/mol", "Cv": "J/(K mol)"},
        "poolings": ("mean", "sum"),
        "paper": PAPER_PHONONS,
        "data": "runs/phonons/phonondb-train-desc.npz",
        "work": "runs/hybrid",
        "results": "hybrid",
    },
    "mp_log10_K": {
        "targets": {"log10_bulk_modulus_vrh": "log10(GPa)"},
        "poolings": ("mean",),
        "paper": PAPER_K,
        "data": "runs/hybrid-mp-K/mp_log10_K-desc.npz",
        "work": "runs/hybrid-mp-K",
        "results": "hybrid_mp_log10_K",
    },
}


def _settings(args) -> dict:
    settings = dict(DATASETS[args.dataset])
    settings["data"] = Path(args.data or settings["data"])
    settings["work"] = Path(args.work or settings["work"])
    settings["models"] = {n: m for n, m in MODELS.items() if m[2] in settings["poolings"]}
    return settings


def prepare(args) -> None:
    settings = _settings(args)
    if args.dataset == "phonondb":
        sys.exit("phonondb's dataset is made by `python benchmarks/bench_phonons.py prepare`")
    plain = settings["data"].with_name(settings["data"].name.replace("-desc", ""))
    plain.parent.mkdir(parents=True, exist_ok=True)
    load(args.dataset).save(plain)
    _cli(
        "descriptors",
        str(plain),
        "-o",
        str(settings["data"]),
        "--workers",
        str(args.workers),
        "--skip-invalid",
    )


def _cli(*args: str) -> None:
    print("aiida-cgcnn " + " ".join(args), flush=True)
    subprocess.run([EXECUTABLE, *args], check=True)


def run(args) -> None:
    settings = _settings(args)
    work, data_file, models = settings["work"], settings["data"], settings["models"]
    work.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if not data_file.exists():
        sys.exit(f"{data_file} is missing: run the prepare stage first")
    columns = args.columns.split(",") if args.columns else [*models, "rf"]
    unknown = set(columns) - set(models) - {"rf"}
    if unknown:
        sys.exit(f"unknown columns {sorted(unknown)}; choose from {[*models, 'rf']}")
    alignn_config = work / f"alignn-{args.alignn_width}.json"
    width = args.alignn_width
    sizes = {"hidden_features": width, "embedding_features": min(64, width // 2), "h_fea_len": width}
    alignn_config.write_text(json.dumps({"model": sizes}))
    for name in columns:
        if name == "rf" or (work / name / "metrics.json").exists():
            continue
        architecture, descriptors, pooling = models[name]
        recipe = ["--epochs", str(args.epochs)]
        if architecture == "alignn":
            recipe = ["--model", "alignn", "--preset", "alignn-paper", "--config", str(alignn_config)]
            recipe += ["--epochs", str(args.alignn_epochs), "--precision", args.precision]
        _cli(
            "train",
            str(data_file),
            "-o",
            str(work / name),
            "--descriptors",
            descriptors,
            "--pooling",
            pooling,
            *recipe,
            "--seed",
            "0",
            "--device",
            args.device,
            "--workers",
            str(args.workers),
            "--skip-invalid",
            "--no-progress",
        )
    split = str(work / "cgcnn-mean" / "best.pt")  # every column has the same split (same file, seed)
    if "rf" not in columns or (work / "rf" / "test_predictions.csv").exists():
        return
    _cli(
        "baseline", str(data_file), "-o", str(work / "rf"), "--split-from", split, "--jobs", str(args.workers)
    )


def _score(path: Path, targets: dict) -> dict[str, dict[str, float]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = {"n_test": len(rows), "ids": sorted(r["id"] for r in rows)}
    for target in targets:
        true = np.array([float(r[f"{target}_true"]) for r in rows])
        pred = np.array([float(r[f"{target}_pred"]) for r in rows])
        mae = float(np.mean(np.abs(pred - true)))
        mad = float(np.mean(np.abs(true - true.mean())))
        scores[target] = {"mae": mae, "mad": mad, "mae_over_mad": mae / mad}
    return scores


def _same_test_set(a: dict, b: dict, targets: dict) -> bool:
    return a["n_test"] == b["n_test"] and all(
        np.isclose(a[t]["mad"], b[t]["mad"], rtol=1e-9, atol=0) for t in targets
    )


def report(args) -> None:
    settings = _settings(args)
    work, targets, models, paper_values = (
        settings["work"],
        settings["targets"],
        settings["models"],
        settings["paper"],
    )
    columns = {}
    for name in ["rf", *models]:
        path = work / name / "test_predictions.csv"
        if path.exists():
            columns[name] = _score(path, targets)
            metrics_file = work / name / "metrics.json"
            if metrics_file.exists():
                metrics = json.loads(metrics_file.read_text())
                columns[name]["epochs_run"] = metrics.get("epochs_run")
                columns[name]["best_epoch"] = metrics.get("best_epoch")
                columns[name]["wall_time_s"] = metrics.get("wall_time_s")
            config = work / name / "best.pt"
            if config.exists():
                from aiida_cgcnn.training.checkpoint import load_checkpoint

                state = load_checkpoint(config)
                columns[name]["model_config"] = state["model_config"]
                columns[name]["train_config"] = {
                    k: state["train_config"].get(k)
                    for k in ("optimizer", "lr", "loss", "epochs", "batch_size")
                }
    if not columns:
        sys.exit(f"nothing to report under {work}")
    test_sets = {tuple(c.pop("ids")) for c in columns.values()}
    if len(test_sets) != 1:
        sys.exit("the columns were tested on different structures; use one dataset file and seed")
    earlier = RESULTS / f"{settings['results']}.json"
    if earlier.exists():  # columns of an earlier report whose runs are elsewhere
        fresh = next(iter(columns.values()))
        for name, scores in json.loads(earlier.read_text())["columns"].items():
            if name in columns:
                continue
            if not _same_test_set(scores, fresh, targets):
                sys.exit(f"{earlier}'s column {name} has another test set; report it from its own runs")
            columns[name] = scores
        columns = {name: columns[name] for name in ["rf", *models] if name in columns}
    heads = [f"{t} MAE ({u}) | {t} MAE/MAD" for t, u in targets.items()]
    print(f"| model | {' | '.join(heads)} | paper MAE/MAD ({', '.join(targets)}) |")
    print("| --- " * (2 * len(targets) + 2) + "|")
    for name, scores in columns.items():
        paper = ", ".join("–" if v is None else f"{v:.3f}" for v in paper_values[name])
        label = name
        if scores.get("epochs_run") is not None:
            model = scores.get("model_config", {})
            width = f"width {model['hidden_features']}, " if "hidden_features" in model else ""
            label += f" ({width}{scores['epochs_run']} epochs)"
        cells = [f"{scores[t]['mae']:.4g} | {scores[t]['mae_over_mad']:.3f}" for t in targets]
        print(f"| {label} | {' | '.join(cells)} | {paper} |")
    first = next(iter(columns.values()))
    mads = ", ".join(f"of {t} {first[t]['mad']:.4g} {u}" for t, u in targets.items())
    print(f"{first['n_test']} test materials; MAD {mads}")
    write_results(
        settings["results"],
        {"work": str(work), "units": targets, "columns": columns, "paper": paper_values},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["prepare", "run", "report"])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="phonondb")
    parser.add_argument("--work", help="Working folder [runs/hybrid; runs/hybrid-mp-K].")
    parser.add_argument(
        "--data",
        help="Dataset with stored descriptors [phonondb: from bench_phonons.py prepare (stable materials, "
        "without the force-set archives the phonon benchmark holds out); mp_log10_K: from prepare].",
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--columns", help="Comma-separated columns to train [all]; 'rf' is the random forest."
    )
    parser.add_argument("--alignn-epochs", type=int, default=25)
    parser.add_argument(
        "--alignn-width", type=int, default=64, help="ALIGNN's width [64]; the paper's is 256."
    )
    parser.add_argument("--precision", default="bfloat16-mixed", choices=["float32", "bfloat16-mixed"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per training [1].")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
