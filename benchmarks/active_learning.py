"""Active learning on real data: reference calculations needed to reach a validation error, by strategy.

Pool: the phonondb training part (``pool``) of the fixed split of the pretrained ``phonons-300K``
recipe; validation: that split's calibration part, fixed; reference: the table itself (the pool's own
tabulated U, Cv, S, F at 300 K, which is what the table reference returns). Every round trains a
small ensemble (CGCNN, sum pooling, per-atom L1 loss: the recipe's settings, fewer epochs), scores the
validation part, predicts the rest of the pool and selects the next batch with
``aiida_cgcnn.selection.select_batch``, the function the ``cgcnn.active_learning`` work chain uses.
Each seed draws the same initial random batch for every strategy (paired comparison).

    OMP_NUM_THREADS=1 python benchmarks/active_learning.py [--seeds 0 1 2] [--strategies uncertainty random]

Writes benchmarks/results/active_learning.json (after every run, so a partial run keeps its results)
and docs/images/active-learning.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import require_data, write_results

from aiida_cgcnn.active_learning import run_active_learning
from aiida_cgcnn.pretrained.build import fixed_split
from aiida_cgcnn.pretrained.recipes import recipe
from aiida_cgcnn.selection import composition_features

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"Cv": 0.02, "Cv_per_atom": 0.10}


def plot(runs: list[dict], path: Path) -> None:
    """Validation Cv MAE/MAD against the references, per cell and per atom (mean and min-max over
    seeds per strategy), and, once known, per cell against the atoms of the computed cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("references", "mae_over_mad", GOALS["Cv"], "per cell"),
        ("references", "mae_over_mad_per_atom", GOALS["Cv_per_atom"], "per atom"),
    ]
    if all("atoms_computed" in r for r in runs):
        panels.append(("atoms_computed", "mae_over_mad", GOALS["Cv"], "per cell"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True)
    colours = {"uncertainty": "tab:red", "random": "tab:blue", "diverse": "tab:green"}
    for ax, (along, key, goal, label) in zip(axes, panels, strict=True):
        for strategy in dict.fromkeys(r["strategy"] for r in runs):
            curves = [r for r in runs if r["strategy"] == strategy]
            n = min(len(r["rounds"]) for r in curves)
            if along == "references":
                x = np.array([r["references"] for r in curves[0]["rounds"][:n]], dtype=float)
            else:  # cells differ per seed: the mean atoms at each round
                x = np.mean([c["atoms_computed"][:n] for c in curves], axis=0)
            y = np.array([[c["rounds"][k]["validation"]["Cv"][key] for k in range(n)] for c in curves])
            colour = colours.get(strategy)
            ax.plot(x, y.mean(axis=0), "o-", color=colour, label=f"{strategy} ({len(curves)} seeds)")
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=colour, alpha=0.2)
        ax.axhline(goal, color="k", ls="--", lw=1, label=f"goal {goal}")
        ax.set_xlabel(
            "reference calculations (training structures)"
            if along == "references"
            else "atoms in the computed cells (mean over seeds)"
        )
        ax.set_ylabel(f"validation Cv MAE/MAD {label}")
        ax.set_yscale("log")
        ax.legend()
    fig.suptitle("Active learning on phonondb (Cv at 300 K): mean and min-max over seeds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def pool_and_validation(pool_size: int | None):
    """The pool (the fixed split's ``pool`` part, or a fixed random subset of it) and the validation
    part (the split's calibration part)."""
    spec = recipe("phonons-300K")
    dataset, _, _ = spec.read(require_data())
    split = fixed_split(dataset, spec)
    pool_index = split["pool"]
    if pool_size is not None and pool_size < len(pool_index):
        pool_index = np.sort(np.random.default_rng(0).choice(pool_index, pool_size, replace=False))
    return dataset.subset(pool_index), dataset.subset(split["calibration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["uncertainty", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--initial", type=int, default=100, help="random seed batch")
    parser.add_argument("--batch", type=int, default=150, help="references per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="first round, from scratch")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, help="later rounds, warm start")
    parser.add_argument("--pool-size", type=int, default=None, help="a fixed random subset of the pool")
    parser.add_argument("--name", default="active_learning")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/images/active-learning.png")
    parser.add_argument("--summarize", action="store_true", help="redo the summary and plot of the results")
    args = parser.parse_args()
    if args.summarize:
        import json

        from common import RESULTS

        results = json.loads((RESULTS / f"{args.name}.json").read_text())
        pool, _ = pool_and_validation(results["settings"]["pool_size"])
        for run in results["runs"]:  # what the references cost: atoms of the computed cells
            atoms = np.cumsum(pool.num_atoms[np.asarray(run["labelled"])])
            run["atoms_computed"] = [int(atoms[r["references"] - 1]) for r in run["rounds"]]
        results.update(summary(results["runs"]))
        (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=float))
        plot(results["runs"], args.plot)
        print(json.dumps(results["summary"], indent=1))
        return
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")

    pool, validation = pool_and_validation(args.pool_size)
    features = None
    if "diverse" in args.strategies:
        numbers = [pool.crystal(k).numbers for k in range(len(pool))]
        features = composition_features(numbers, np.abs(np.linalg.det(pool.lattices)))
    spec = recipe("phonons-300K")
    train_config = dict(spec.train, epochs=args.epochs)
    settings = {
        "data": "phonondb-300K (recipe phonons-300K, fixed split seed 0)",
        "pool": len(pool),
        "validation": f"calibration part of the fixed split, {len(validation)} structures",
        "reference": "the table: the pool's tabulated U, Cv, S, F at 300 K",
        "select_on": "Cv ensemble spread per cell",
        "goals_mae_over_mad": GOALS,
        **{k: v for k, v in vars(args).items() if k not in ("plot", "name")},
        "model": dict(spec.model),
        "train": train_config,
        "threads": torch.get_num_threads(),
    }
    runs: list[dict] = []
    start = time.monotonic()
    for seed in args.seeds:
        for strategy in args.strategies:
            run_start = time.monotonic()
            with tempfile.TemporaryDirectory() as work:
                result = run_active_learning(
                    pool,
                    validation,
                    lambda index: pool.targets[index],  # the table reference
                    work,
                    strategy=strategy,
                    seed=seed,
                    initial=args.initial,
                    batch=args.batch,
                    rounds=args.rounds,
                    members=args.members,
                    model_config=dict(spec.model),
                    train_config=train_config,
                    fine_tune_epochs=args.fine_tune_epochs,
                    select_on="Cv",
                    features=features,
                    goals=GOALS,
                    echo=lambda line: print(line, flush=True),
                )
            record = result.to_dict()
            record["wall_s"] = time.monotonic() - run_start
            record["selected_mean_atoms"] = float(pool.num_atoms[result.labelled[args.initial :]].mean())
            runs.append(record)
            print(f"{strategy} seed {seed}: reached {result.reached}, {record['wall_s']:.0f} s", flush=True)
            write_results(
                args.name,
                {"settings": settings, "wall_s": time.monotonic() - start, "runs": runs, **summary(runs)},
            )
    plot(runs, args.plot)
    print(f"curves -> {args.plot}")


def summary(runs: list[dict]) -> dict:
    """Per strategy: references to reach each goal per seed, and the errors after the last round."""
    table: dict[str, dict] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == strategy]
        last = [r["rounds"][-1] for r in mine]
        table[strategy] = {
            "seeds": [r["seed"] for r in mine],
            "reached": {goal: [r["reached"][goal] for r in mine] for goal in GOALS},
            "final_references": [x["references"] for x in last],
            "final_Cv_mae_over_mad": [x["validation"]["Cv"]["mae_over_mad"] for x in last],
            "final_Cv_mae_over_mad_per_atom": [x["validation"]["Cv"]["mae_over_mad_per_atom"] for x in last],
            "final_U_mae_over_mad": [x["validation"]["U"]["mae_over_mad"] for x in last],
            "final_U_mae_over_mad_per_atom": [x["validation"]["U"]["mae_over_mad_per_atom"] for x in last],
            "wall_s": [r["wall_s"] for r in mine],
            "selected_mean_atoms": [r["selected_mean_atoms"] for r in mine],
            "final_atoms_computed": [r.get("atoms_computed", [None])[-1] for r in mine],
        }
        if strategy != "random":
            table[strategy]["references_to_random_final"] = _matched(mine, runs)
    return {"summary": table}


def _first_below(x: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The references at which the curve (x, y) first falls to ``level``, linear between rounds."""
    for k in range(len(y)):
        if y[k] <= level:
            if k == 0:
                return float(x[0])
            return float(x[k - 1] + (x[k] - x[k - 1]) * (y[k - 1] - level) / (y[k - 1] - y[k]))
    return None


def _matched(mine: list[dict], runs: list[dict]) -> dict[str, list[float | None]]:
    """Per seed: the references this strategy needed to reach the error random selection had after
    its last round (same seed, same initial batch), per cell and per atom."""
    out: dict[str, list[float | None]] = {"mae_over_mad": [], "mae_over_mad_per_atom": []}
    for run in mine:
        random = next((r for r in runs if r["strategy"] == "random" and r["seed"] == run["seed"]), None)
        for key, values in out.items():
            if random is None:
                values.append(None)
                continue
            x = np.array([r["references"] for r in run["rounds"]], dtype=float)
            y = np.array([r["validation"]["Cv"][key] for r in run["rounds"]])
            values.append(_first_below(x, y, random["rounds"][-1]["validation"]["Cv"][key]))
    return out


if __name__ == "__main__":
    main()
