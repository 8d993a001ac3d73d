"""Accuracy with the paper's 60/20/20 split on the real datasets of ../shared/data.

For each set: train CGCNN (reference sizes) on 60 %, select the best epoch on 20 %, report the
test metrics on the last 20 %, next to the mean-predictor baseline (MAE/MAD = 1 means no skill).

    python benchmarks/bench_accuracy.py [--epochs 300] [--device cuda] [--sets perovskites ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import load, write_results

from aiida_cgcnn.training.trainer import Trainer

SETS = {
    # name: (pooling, CGCNN paper's test MAE on its (larger) Materials Project / perovskite sets)
    "perovskites": ("mean", "0.099 eV/atom on 18,928 perovskites, energy above hull (Fig. S6)"),
    "mp_log10_K": ("mean", "0.054 log10(GPa), 2,041 training crystals (Table I)"),
    "mp_log10_G": ("mean", "0.087 log10(GPa), 2,041 training crystals (Table I)"),
    "wbm_formation": ("mean", "0.039 eV/atom for MP formation energies, 28,046 training crystals (Table I)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for name in args.sets:
        pooling, paper = SETS[name]
        dataset = load(name)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = Trainer(
                dataset,
                tmp,
                model_config={"pooling": pooling},
                train_config={
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "lr": args.lr,
                    "seed": args.seed,
                },
                device=args.device,
                progress=False,
            ).fit()
        elapsed = time.perf_counter() - start
        test = result.metrics["test"]
        results[name] = {
            "structures": len(dataset),
            "unit": dataset.units[0],
            "target": dataset.target_names[0],
            "train/val/test": [result.metrics[f"num_{p}"] for p in ("train", "val", "test")],
            "test": test,
            "best_epoch": result.metrics["best_epoch"],
            "wall_time_s": elapsed,
            "paper": paper,
        }
        print(
            f"{name:15s} n={len(dataset):5d}  test MAE {test['mae']:.4f} {dataset.units[0]}  "
            f"MAE/MAD {test['mae_over_mad']:.3f}  R2 {test['r2']:.3f}  ({elapsed:.0f} s)",
            flush=True,
        )
    write_results(
        "accuracy",
        {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
