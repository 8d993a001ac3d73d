"""ALIGNN against upstream alignn on the same split: validation MAE and training time.

Upstream alignn's pure-PyTorch ALIGNN (``ALIGNNAtomWisePure``, layer norm, run by the interpreter of
its own virtual environment) and ours (``train --model alignn --preset alignn-paper``, batch norm as
the paper, in float32 and with ``--precision bfloat16-mixed``) train on the same Materials Project
binaries (log10 of the bulk modulus), the same 60/20/20 split (ours, seed 0, handed to upstream), the
same recipe: targets standardised on the training set, L1 loss, AdamW (lr 10⁻³, weight decay 10⁻⁵),
batches of 64, a one-cycle schedule stepped after every batch, every validation structure evaluated
after every epoch, the epoch of lowest validation MAE kept. Upstream's own training script is not
used: it replaces the optimizer after attaching the scheduler (constant learning rate), steps the
scheduler per epoch and drops the last validation batch; the loop here gives its model the recipe
ours gets. One thread each, one after the other.

    python -m venv /work/alignn-venv && /work/alignn-venv/bin/pip install -c constraints.txt alignn
    python benchmarks/bench_alignn_accuracy.py --upstream /work/alignn-venv/bin/python

Writes ``benchmarks/results/alignn_accuracy.json``. About 40 minutes with the defaults
(``--n 1000 --epochs 20``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_alignn import UPSTREAM_SETUP, upstream_structures
from common import load, write_results

from aiida_cgcnn.training.checkpoint import load_checkpoint

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")

UPSTREAM_CODE = (
    UPSTREAM_SETUP
    + r"""
y = torch.tensor(args["targets"], dtype=torch.float32)
split = {k: np.asarray(v) for k, v in args["split"].items()}
mean, std = y[split["train"]].mean(), y[split["train"]].std()
torch.manual_seed(0)
model = ALIGNNAtomWisePure(config)
bs, epochs = args["batch_size"], args["epochs"]
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
steps = -(-len(split["train"]) // bs)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=epochs * steps)
def predict(indices):
    model.eval()
    out = []
    with torch.no_grad():
        for k in range(0, len(indices), bs):
            g, lg = batch_torch_graph_pairs([pairs[i] for i in indices[k:k + bs]])
            out.append(model((g, lg, None))["out"].view(-1) * std + mean)
    return torch.cat(out)
history, best = [], None
rng = np.random.default_rng(0)
for epoch in range(epochs):
    start = time.perf_counter()
    model.train()
    order = rng.permutation(split["train"])
    for k in range(0, len(order), bs):
        part = order[k:k + bs]
        g, lg = batch_torch_graph_pairs([pairs[i] for i in part])
        out = model((g, lg, None))["out"].view(-1)
        loss = torch.nn.functional.l1_loss(out, (y[part] - mean) / std)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    val = float((predict(split["val"]) - y[split["val"]]).abs().mean())
    history.append({"epoch": epoch, "val_mae": val, "time_s": time.perf_counter() - start})
    if best is None or val < best["val_mae"]:
        test = float((predict(split["test"]) - y[split["test"]]).abs().mean())
        best = {"epoch": epoch, "val_mae": val, "test_mae": test}
print(json.dumps({"history": history, "best": best}))
"""
)


def ours(data: Path, work: Path, epochs: int, precision: str) -> dict:
    """Train ours through the command, as a user would; the best epoch's metrics and every epoch's time."""
    run = work / precision
    command = [
        EXECUTABLE, "train", str(data), "-o", str(run), "--model", "alignn", "--preset", "alignn-paper",
        "--epochs", str(epochs), "--seed", "0", "--precision", precision, "--device", "cpu",
        "--workers", "1", "--no-progress",
    ]  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "learning_curve.csv") as handle:
        history = [
            {"epoch": int(r["epoch"]), "val_mae": float(r["val_mae"]), "time_s": float(r["time_s"])}
            for r in csv.DictReader(handle)
        ]
    best = min(history, key=lambda r: r["val_mae"])
    split = {k: v.tolist() for k, v in load_checkpoint(run / "best.pt")["split"].items()}
    return {
        "precision": precision,
        "history": history,
        "best": {"epoch": best["epoch"], "val_mae": best["val_mae"], "test_mae": metrics["test"]["mae"]},
        "wall_s": wall,
        "split": split,
    }


def upstream(python: str, dataset, split: dict, epochs: int, batch_size: int) -> dict:
    payload = {
        "structures": upstream_structures(dataset.crystals()),
        "targets": dataset.targets[:, 0].tolist(),
        "split": split,
        "epochs": epochs,
        "batch_size": batch_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(payload))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        print("upstream alignn, same split and recipe", flush=True)
        start = time.perf_counter()
        out = subprocess.run(
            [python, "-c", UPSTREAM_CODE, str(path)], capture_output=True, text=True, env=env, check=False
        )
        wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"upstream alignn failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", metavar="PYTHON", required=True, help="upstream alignn's interpreter")
    parser.add_argument("--n", type=int, default=1000, help="MP binaries (the file's first N) [1000]")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--work", default="runs/alignn-accuracy")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dataset = load("mp_log10_K", limit=args.n)
    data = work / "mp_log10_K.npz"
    dataset.save(data)
    runs = {p: ours(data, work, args.epochs, p) for p in ("float32", "bfloat16-mixed")}
    split = runs["float32"]["split"]
    if runs["bfloat16-mixed"]["split"] != split:
        raise RuntimeError("the two runs of ours split differently")
    runs["upstream"] = upstream(args.upstream, dataset, split, args.epochs, 64)
    mad = float(np.abs(dataset.targets[split["test"], 0] - dataset.targets[split["test"], 0].mean()).mean())
    print(f"\n{len(dataset)} MP binaries (log10 K), {args.epochs} epochs, split 60/20/20; test MAD {mad:.4f}")
    print(f"{'model':>34} {'best epoch':>10} {'val MAE':>8} {'test MAE':>8} {'s/epoch':>8}")
    summary = {}
    for name, run in runs.items():
        label = {"upstream": "upstream (layer norm)"}.get(name, f"ours (batch norm, {name})")
        per_epoch = float(np.median([r["time_s"] for r in run["history"]]))
        best = run["best"]
        summary[name] = {**best, "median_epoch_s": per_epoch}
        print(
            f"{label:>34} {best['epoch']:10d} {best['val_mae']:8.4f} {best['test_mae']:8.4f} {per_epoch:8.1f}"
        )
    for name in ("float32", "bfloat16-mixed"):
        ratio = summary["upstream"]["median_epoch_s"] / summary[name]["median_epoch_s"]
        summary[name]["epoch_speedup_over_upstream"] = ratio
        print(f"ours ({name}) epoch {ratio:.2f}x faster than upstream's")
    for run in runs.values():
        run.pop("split", None)
    write_results(
        "alignn_accuracy",
        {
            "threads": 1,
            "structures": len(dataset),
            "epochs": args.epochs,
            "split_sizes": {k: len(v) for k, v in split.items()},
            "test_mad": mad,
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
