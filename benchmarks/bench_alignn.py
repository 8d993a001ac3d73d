"""ALIGNN on CPU with real structures: line-graph cost, memory and time of 200-atom batches, graph sizes.

Three measurements, all at the paper's sizes (the registry defaults: 4 ALIGNN + 4 edge-gated layers,
256 features, batch norm, backtracking pairs kept), on one thread unless ``--threads`` says otherwise:

a. **line-graph share**: the time to build the line graph of a batch (``line_graph``, as
   ``ALIGNN.atom_vectors`` calls it) against the time of the model's forward and backward pass on
   the same batch (which includes building it), for a batch of 64 Materials Project binaries
   (the paper's batch size) and for the largest phonondb cells;
b. **200-atom batches**: peak resident memory and time per training step (forward, backward, Adam)
   for the largest primitive cells of phonondb (184 to 200 atoms), batches of 1, 2 and 4 crystals
   and 4 crystals under an edge cap, with the fused autograd functions (``alignn_ops``, the default)
   and with the reference path (``model.workspace = None``: every layer as the equations, with
   autograd). Each configuration runs in a fresh subprocess; peak memory is that process's peak
   resident set, ``VmHWM`` of ``/proc/self/status``, reported in all and above the same process's
   peak just before the first training step (interpreter, torch, model, optimizer, batches).
   Not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries ``ru_maxrss`` across
   fork and exec, so a worker started by a parent that has already trained reports the parent's peak;
   ``VmHWM`` belongs to the worker's own address space (the worker also records ``ru_maxrss``).
   The time ratio of the two paths is measured again in one process, alternating fused and
   reference steps of the same model, so that both see the same load on a shared machine;
c. **graph sizes** of each 200-atom-ish crystal: crystal-graph edges, line-graph edges with and
   without the backtracking pairs.

    python benchmarks/bench_alignn.py [--steps 2] [--repeats 2] [--rounds 3] [--threads 1]

Writes ``benchmarks/results/alignn.json``. About 5-10 minutes on one thread.

With ``--upstream PYTHON`` it compares instead with upstream alignn's pure-PyTorch ALIGNN
(``ALIGNNAtomWisePure``, ``build_pure_torch_graph``), run by ``PYTHON`` from a virtual environment
of its own (never install alignn beside aiida-cgcnn): graph construction and one training epoch on
``--upstream-n`` (200) MP binaries, batches of 64, one thread each: upstream (layer norm, float32)
against ours with batch norm (the paper) and layer norm (upstream's choice), each in float32 and
``bfloat16-mixed``; and upstream under ``torch.autocast`` to bfloat16 (what its ``use_amp`` does,
on CUDA only, applied here on the CPU). After a warm-up epoch of each, ``--epochs`` (3) rounds of
one epoch of every model back to back (upstream's process stays alive between rounds), so that a
change of load on a shared machine hits all of them alike; the speed-up is the median of the
rounds' ratios. Writes
``benchmarks/results/alignn_upstream.json``. About 6 minutes.

    python -m venv /work/alignn-venv && /work/alignn-venv/bin/pip install -c constraints.txt alignn
    python benchmarks/bench_alignn.py --upstream /work/alignn-venv/bin/python
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import load, require_data, write_results
from torch import nn

from aiida_cgcnn.graph.batch import GraphStore, build_graph_store, edge_capped_batches
from aiida_cgcnn.graph.crystal_graph import GraphSettings
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.graph.line_graph import line_graph
from aiida_cgcnn.models.registry import build_model, model_defaults
from aiida_cgcnn.structures import Crystal, validate_crystal
from aiida_cgcnn.training.public_data import phonondb_crystal

LARGEST = 4  # phonondb's largest primitive cells (200, 192, 189, 184 atoms)
PRECISIONS = ("float32", "bfloat16-mixed")


def largest_phonondb_cells(count: int) -> list[Crystal]:
    """The ``count`` largest primitive cells of phonondb (stable or not: only the structure matters)."""
    records = []
    with gzip.open(require_data() / "phonondb/phonondb-300K.jsonl.gz", "rt") as handle:
        for line in handle:
            record = json.loads(line)
            records.append((record["natoms"], record["mp_id"], record))
    records.sort(key=lambda r: (-r[0], r[1]))
    return [validate_crystal(phonondb_crystal(record)) for *_, record in records[:count]]


def paper_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model({"architecture": "alignn", "out_features": 1}, atom_feature_table())


def forward_backward(model: nn.Module, batch) -> None:
    loss = nn.functional.mse_loss(model(batch).prediction, batch.targets)
    loss.backward()


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- a. line-graph share ----------------------------------------------------------------------


def line_graph_share(store: GraphStore, indices: np.ndarray, repeats: int) -> dict:
    targets = np.zeros((len(store), 1), dtype=np.float32)
    batch = store.batch(indices, targets)
    model = paper_model()
    model.train()
    n_atoms = int(batch.numbers.shape[0])
    build = median_time(lambda: line_graph(batch.src, batch.dst, batch.vectors, n_atoms), 20)
    forward_backward(model, batch)  # warm-up: workspace arrays, allocator
    model.zero_grad(set_to_none=True)

    def step():
        forward_backward(model, batch)
        model.zero_grad(set_to_none=True)

    fb = median_time(step, repeats)
    lines = line_graph(batch.src, batch.dst, batch.vectors, n_atoms)
    return {
        "crystals": len(indices),
        "atoms": n_atoms,
        "edges": int(batch.src.shape[0]),
        "line_edges": lines.num_edges,
        "line_graph_s": build,
        "forward_backward_s": fb,
        "share": build / fb,
    }


# --- b. one configuration per subprocess ------------------------------------------------------


def maxrss_mib() -> float:
    """getrusage's peak RSS (MiB); on Linux it includes the parent's peak at fork (see the docstring)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def peak_rss_mib() -> float:
    """Peak resident set of this process's address space (MiB): VmHWM, reset by exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return maxrss_mib()  # not Linux


def worker(config: dict) -> dict:
    torch.set_num_threads(config["threads"])
    store = GraphStore.load(Path(config["store"]), "")
    targets = np.zeros((len(store), 1), dtype=np.float32)
    indices = np.arange(config["crystals"])
    parts = edge_capped_batches(indices, store.num_edges, config["crystals"], config["max_edges"])
    batches = [store.batch(part, targets) for part in parts]
    model = paper_model()
    if config["path"] == "reference":
        model.workspace = None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = peak_rss_mib()

    def step():  # one training step over the crystals (several batches under an edge cap)
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            forward_backward(model, batch)
            optimizer.step()

    step()  # warm-up: the optimizer's state, the workspace, the allocator
    times = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        **{k: config[k] for k in ("path", "crystals", "max_edges")},
        "batches": [len(p) for p in parts],
        "atoms": int(store.num_atoms[indices].sum()),
        "edges": int(store.num_edges[indices].sum()),
        "step_s": statistics.median(times),
        "step_s_min": min(times),
        "step_s_all": times,
        "s_per_crystal": statistics.median(times) / config["crystals"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_step_mib": before,
        "training_peak_mib": peak_rss_mib() - before,
        "ru_maxrss_mib": maxrss_mib(),
    }


def run_worker(config: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"]), "MKL_NUM_THREADS": str(config["threads"])}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"worker {config} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved(store: GraphStore, crystals: int, rounds: int) -> dict:
    """Time per training step of the fused and the reference path of one model, alternating step by
    step in one process, so that both see the same load on a shared machine; the ratio of each
    pair of neighbouring steps, and of the fastest steps."""
    targets = np.zeros((len(store), 1), dtype=np.float32)
    batch = store.batch(np.arange(crystals), targets)
    model = paper_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    workspace = model.workspace

    def step(path: str) -> float:
        model.workspace = workspace if path == "fused" else None
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        forward_backward(model, batch)
        optimizer.step()
        return time.perf_counter() - start

    step("fused"), step("reference")  # warm-up
    fused, reference = [], []
    for _ in range(rounds):
        fused.append(step("fused"))
        reference.append(step("reference"))
    pairs = [r / f for f, r in zip(fused, reference, strict=True)]
    return {
        "crystals": crystals,
        "fused_s": fused,
        "reference_s": reference,
        "ratio_median_of_pairs": statistics.median(pairs),
        "ratio_of_fastest": min(reference) / min(fused),
    }


# --- upstream alignn (optional, in its own virtual environment) -------------------------------

#: upstream's side, shared with bench_alignn_accuracy: read the job, build upstream's graphs (timed)
#: and the paper-size model's config
UPSTREAM_SETUP = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from jarvis.core.atoms import Atoms
from alignn.torch_graph_builder import build_pure_torch_graph, batch_torch_graph_pairs
from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig
import alignn
args = json.load(open(sys.argv[1]))
structures = args["structures"]
start = time.perf_counter()
pairs = []
for s in structures:
    atoms = Atoms(lattice_mat=s["lattice"], coords=s["frac_coords"], elements=s["symbols"], cartesian=False)
    pairs.append(build_pure_torch_graph(atoms, two_body_cutoff=8.0, three_body_cutoff=8.0, max_neighbors=12,
                                        atom_features="cgcnn", compute_line_graph=True))
graph_s = time.perf_counter() - start
config = ALIGNNAtomWisePureConfig(name="alignn_atomwise_pure", alignn_layers=4, gcn_layers=4,
    atom_input_features=92, hidden_features=256, embedding_features=64, output_features=1,
    calculate_gradient=False, gradwise_weight=0.0, use_penalty=False, energy_mult_natoms=False,
    three_body_cutoff=8.0, use_zbl=False)
"""

UPSTREAM_CODE = (
    UPSTREAM_SETUP
    + r"""
targets = torch.zeros(len(pairs))
bs = args["batch_size"]
# float32, and bfloat16 autocast: what upstream's `use_amp` does (on CUDA only) applied on the CPU
runs = {}
for precision in ("float32", "bfloat16-autocast"):
    torch.manual_seed(0)
    model = ALIGNNAtomWisePure(config)
    model.train()
    runs[precision] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
def epoch(precision):
    model, optimizer = runs[precision]
    for k in range(0, len(pairs), bs):
        g, lg = batch_torch_graph_pairs(pairs[k:k + bs])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "float32"):
            out = model((g, lg, None))["out"]
        loss = torch.nn.functional.mse_loss(out.view(-1).float(), targets[k:k + bs])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
for precision in runs:
    epoch(precision)  # warm-up
print(json.dumps({"version": getattr(alignn, "__version__", "?"), "graph_s": graph_s,
    "edges": int(sum(p[0].src.shape[0] for p in pairs)),
    "line_edges": int(sum(p[1].src.shape[0] for p in pairs))}), flush=True)
for line in sys.stdin:  # one timed epoch per request, so that the caller can alternate with its own
    t = time.perf_counter(); epoch(line.strip())
    print(json.dumps({"epoch_s": time.perf_counter() - t}), flush=True)
"""
)


def upstream_structures(crystals) -> list[dict]:
    """Crystals as upstream's job reads them (lattice, fractional coordinates, element symbols)."""
    from pymatgen.core.periodic_table import Element

    return [
        {
            "lattice": c.lattice.tolist(),
            "frac_coords": c.frac_coords.tolist(),
            "symbols": [Element.from_Z(int(z)).symbol for z in c.numbers],
        }
        for c in crystals
    ]


def upstream_comparison(python: str, n: int, batch_size: int, epochs: int) -> dict:
    """Graph construction and training epochs of upstream alignn's pure-PyTorch ALIGNN
    (``ALIGNNAtomWisePure``, layer norm, run by ``python``) and of ours, on ``n`` MP binaries."""

    dataset = load("mp_log10_K", limit=n)
    crystals = list(dataset.crystals())
    structures = upstream_structures(crystals)
    start = time.perf_counter()
    store, _ = build_graph_store(crystals, GraphSettings(), workers=1)
    graph_s = time.perf_counter() - start
    targets = np.zeros((len(store), 1), dtype=np.float32)
    parts = edge_capped_batches(np.arange(len(store)), store.num_edges, batch_size)
    batches = [store.batch(part, targets) for part in parts]
    start = time.perf_counter()
    line_edges = sum(line_graph(b.src, b.dst, b.vectors, b.numbers.shape[0]).num_edges for b in batches)
    line_s = time.perf_counter() - start
    ours = {"graph_s": graph_s, "line_graph_s": line_s, "edges": len(store.src), "line_edges": line_edges}
    epochs_of = {}
    for norm in ("batch", "layer"):
        for precision in PRECISIONS:
            torch.manual_seed(0)
            config = {"architecture": "alignn", "out_features": 1, "norm": norm, "precision": precision}
            model = build_model(config, atom_feature_table())
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def epoch(model=model, optimizer=optimizer):
                for batch in batches:
                    optimizer.zero_grad(set_to_none=True)
                    forward_backward(model, batch)
                    optimizer.step()

            epoch()  # warm-up
            epochs_of[f"epoch_s_{norm}_norm_{precision}"] = epoch
            ours[f"epoch_s_{norm}_norm_{precision}"] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "structures.json"
        path.write_text(json.dumps({"structures": structures, "batch_size": batch_size}))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [python, "-c", UPSTREAM_CODE, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            first = process.stdout.readline()
            if not first:
                raise RuntimeError("upstream alignn failed (see its error output above)")
            upstream = {**json.loads(first), "epoch_s": [], "epoch_s_bfloat16_autocast": []}
            # rounds of one epoch each, upstream then ours: every model sees the same load on average
            for _ in range(epochs):
                for key, request in (
                    ("epoch_s", "float32"),
                    ("epoch_s_bfloat16_autocast", "bfloat16-autocast"),
                ):
                    process.stdin.write(request + "\n")
                    process.stdin.flush()
                    upstream[key].append(json.loads(process.stdout.readline())["epoch_s"])
                for key, epoch in epochs_of.items():
                    ours[key].append(median_time(epoch, 1))
        finally:
            process.stdin.close()
            process.wait()
    return {"structures": len(crystals), "batch_size": batch_size, "upstream": upstream, "ours": ours}


# --- c. graph sizes ---------------------------------------------------------------------------


def graph_sizes(store: GraphStore, index: int, sid: str) -> dict:
    batch = store.batch([index])
    n = int(batch.numbers.shape[0])
    with_bt = line_graph(batch.src, batch.dst, batch.vectors, n, backtracking=True).num_edges
    without = line_graph(batch.src, batch.dst, batch.vectors, n, backtracking=False).num_edges
    edges = int(batch.src.shape[0])
    return {
        "id": sid,
        "atoms": n,
        "edges": edges,
        "line_edges": with_bt,
        "line_edges_no_backtracking": without,
        "line_per_edge": with_bt / edges,
        "line_per_edge_no_backtracking": without / edges,
        "backtracking_pairs": with_bt - without,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per configuration")
    parser.add_argument("--repeats", type=int, default=2, help="timed forward+backward passes (part a)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fused/reference steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--upstream",
        metavar="PYTHON",
        help="only compare with upstream alignn, run by this interpreter (its own virtual environment)",
    )
    parser.add_argument("--upstream-n", type=int, default=200, help="MP binaries for --upstream")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model for --upstream")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    if args.upstream:
        result = upstream_comparison(args.upstream, args.upstream_n, 64, args.epochs)
        up, ours = result["upstream"], result["ours"]
        n = result["structures"]
        print(f"upstream alignn {up['version']} against aiida-cgcnn, {n} MP binaries, batch 64, 1 thread")
        print(
            f"edges: upstream {up['edges']}, ours {ours['edges']}; line-graph edges: upstream "
            f"{up['line_edges']}, ours {ours['line_edges']}"
        )
        print(
            f"graphs (with line graphs): upstream {up['graph_s']:.2f} s, ours "
            f"{ours['graph_s'] + ours['line_graph_s']:.2f} s "
            f"({up['graph_s'] / (ours['graph_s'] + ours['line_graph_s']):.1f}x)"
        )
        best_up = statistics.median(up["epoch_s"])
        print(
            f"epoch (median of {len(up['epoch_s'])}): upstream (layer norm, float32) {best_up:.1f} s "
            f"({n / best_up:.1f} crystals/s)"
        )
        ratios = {}
        for norm in ("batch", "layer"):
            for precision in PRECISIONS:
                key = f"epoch_s_{norm}_norm_{precision}"
                best = statistics.median(ours[key])
                # each round's epochs ran back to back: the median of the rounds' ratios
                ratio = statistics.median(u / o for u, o in zip(up["epoch_s"], ours[key], strict=True))
                ratios[f"{norm}_norm_{precision}"] = ratio
                print(
                    f"  ours, {norm} norm, {precision:>14}: {best:5.1f} s ({n / best:5.1f} crystals/s), "
                    f"{ratio:.2f}x upstream (median of the rounds' ratios)"
                )
        amp = up["epoch_s_bfloat16_autocast"]
        print(
            f"upstream under bfloat16 autocast (its use_amp, CUDA-only, applied on the CPU): "
            f"{statistics.median(amp):.1f} s per epoch"
        )
        for norm in ("batch", "layer"):
            key = f"epoch_s_{norm}_norm_bfloat16-mixed"
            ratio = statistics.median(u / o for u, o in zip(amp, ours[key], strict=True))
            ratios[f"{norm}_norm_bfloat16-mixed_over_upstream_autocast"] = ratio
            print(f"  ours, {norm} norm, bfloat16-mixed: {ratio:.2f}x upstream under autocast")
        result["speedup_over_upstream"] = ratios
        write_results("alignn_upstream", {"threads": 1, **result})
        return
    start = time.perf_counter()
    settings = GraphSettings()  # 8 Å, 12 neighbours (ties kept): what `train --model alignn` uses
    defaults = model_defaults("alignn")
    print(f"ALIGNN at the paper's sizes: {defaults}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} cores\n")

    big = largest_phonondb_cells(LARGEST)
    big_store, _ = build_graph_store(big, settings, workers=1)
    small = load("mp_log10_K", limit=64)
    small_store, _ = build_graph_store(list(small.crystals()), settings, workers=1)

    # c. graph sizes
    sizes = [graph_sizes(big_store, k, c.id) for k, c in enumerate(big)]
    print("c. graph sizes of phonondb's largest primitive cells")
    print(
        f"{'id':>10} {'atoms':>5} {'edges':>6} {'line edges':>10} {'no backtr.':>10} {'L/E':>5} {'L/E nb':>6}"
    )
    for s in sizes:
        print(
            f"{s['id']:>10} {s['atoms']:5d} {s['edges']:6d} {s['line_edges']:10d} "
            f"{s['line_edges_no_backtracking']:10d} {s['line_per_edge']:5.2f} "
            f"{s['line_per_edge_no_backtracking']:6.2f}"
        )

    # a. line-graph share
    print("\na. line graph built per batch, against ALIGNN's forward+backward on that batch (fused path)")
    share = {
        "mp_binaries_64": line_graph_share(small_store, np.arange(len(small_store)), args.repeats),
        "phonondb_largest_1": line_graph_share(big_store, np.arange(1), args.repeats),
        "phonondb_largest_4": line_graph_share(big_store, np.arange(LARGEST), args.repeats),
    }
    print(
        f"{'batch':>20} {'atoms':>6} {'edges':>6} {'line edges':>10} {'line graph':>11} "
        f"{'fwd+bwd':>8} {'share':>6}"
    )
    for name, s in share.items():
        print(
            f"{name:>20} {s['atoms']:6d} {s['edges']:6d} {s['line_edges']:10d} "
            f"{1e3 * s['line_graph_s']:9.2f}ms {s['forward_backward_s']:7.2f}s {100 * s['share']:5.2f}%"
        )

    # b. 200-atom batches, one subprocess per configuration
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "largest.npz"
        big_store.save(store_path)
        cap = int(big_store.num_edges[:2].sum())  # two of the largest crystals per batch
        configs = [
            (path, crystals, max_edges)
            for path in ("fused", "reference")
            for crystals, max_edges in ((1, None), (2, None), (4, None), (4, cap))
        ]
        runs = []
        print(
            f"\nb. training steps (forward, backward, AdamW) on the {LARGEST} largest phonondb cells; "
            "peak RSS of a fresh process"
        )
        print(
            f"{'path':>9} {'crystals':>8} {'max_edges':>9} {'batches':>8} {'s/step':>7} {'s/crystal':>9} "
            f"{'peak MiB':>8} {'above start':>11}"
        )
        for path, crystals, max_edges in configs:
            run = run_worker(
                {
                    "store": str(store_path),
                    "path": path,
                    "crystals": crystals,
                    "max_edges": max_edges,
                    "steps": args.steps,
                    "threads": args.threads,
                }
            )
            runs.append(run)
            print(
                f"{path:>9} {crystals:8d} {max_edges!s:>9} {run['batches']!s:>8} "
                f"{run['step_s']:7.2f} {run['s_per_crystal']:9.2f} {run['peak_rss_mib']:8.0f} "
                f"{run['training_peak_mib']:11.0f}"
            )

    def find(path, crystals, max_edges=None):
        wanted = (path, crystals, max_edges)
        return next(r for r in runs if (r["path"], r["crystals"], r["max_edges"]) == wanted)

    ratios = {}
    print("\nreference / fused (time per step, training memory above start)")
    for crystals, max_edges in ((1, None), (2, None), (4, None), (4, cap)):
        f, r = find("fused", crystals, max_edges), find("reference", crystals, max_edges)
        key = f"{crystals}" + (f"_cap{max_edges}" if max_edges else "")
        ratios[key] = {
            "time": r["step_s"] / f["step_s"],
            "training_memory": r["training_peak_mib"] / max(f["training_peak_mib"], 1.0),
        }
        print(
            f"  {crystals} crystal(s){' capped' if max_edges else '':7}: time {ratios[key]['time']:.2f}x, "
            f"memory {ratios[key]['training_memory']:.2f}x"
        )
    f4, f4cap = find("fused", 4), find("fused", 4, cap)
    print(
        f"edge cap {cap} (two crystals per batch) against batches of 4, fused: memory above start "
        f"{f4cap['training_peak_mib'] / max(f4['training_peak_mib'], 1.0):.2f}x, "
        f"time {f4cap['step_s'] / f4['step_s']:.2f}x"
    )
    print(
        "\nreference / fused, alternating step by step in one process (same load on both; "
        "median of the pairs' ratios, ratio of the fastest steps)"
    )
    alternating = [interleaved(big_store, crystals, args.rounds) for crystals in (1, 4)]
    for a in alternating:
        print(
            f"  {a['crystals']} crystal(s): fused {min(a['fused_s']):.2f} s, reference "
            f"{min(a['reference_s']):.2f} s (fastest); ratio {a['ratio_median_of_pairs']:.2f}x "
            f"(pairs), {a['ratio_of_fastest']:.2f}x (fastest)"
        )
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    write_results(
        "alignn",
        {
            "threads": args.threads,
            "graph_settings": settings.to_dict(),
            "model": defaults,
            "memory_measure": "VmHWM (/proc/self/status, peak RSS of the address space) of a fresh "
            "subprocess per configuration; training_peak_mib = peak after the timed steps minus peak "
            "before the first step; ru_maxrss is recorded too but includes the parent's peak at fork",
            "graph_sizes": sizes,
            "line_graph_share": share,
            "training_steps": runs,
            "edge_cap": cap,
            "reference_over_fused": ratios,
            "reference_over_fused_alternating": alternating,
            "total_s": total,
        },
    )


if __name__ == "__main__":
    main()
