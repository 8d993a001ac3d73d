"""Pretrained models: time to load by name, single-crystal latency through the ASE calculator (whole
ensemble, primitive-cell reduction and domain check included), batched throughput, wheel size.

The baseline, measured in the same run, is one member alone through the plain ``Predictor`` on the
same crystals: the ratio says what the ensemble and its bookkeeping cost. Crystals: 100 phonondb
test-part primitive cells of at most 20 atoms, read from ../shared/data.

    python benchmarks/bench_pretrained.py [--model phonons-300K]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import require_data, write_results

from aiida_cgcnn.ase import CGCNNCalculator
from aiida_cgcnn.ensemble import Ensemble
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.pretrained import available, card, member_files, recipe

ROOT = Path(__file__).resolve().parents[1]


def _crystals(name: str, n: int, largest: int = 20):
    entry = card(name)
    dataset, _, _ = recipe(name).read(require_data())
    index = {str(i): k for k, i in enumerate(dataset.ids)}
    rows = [index[i] for i in entry["test_ids"] if dataset.num_atoms[index[i]] <= largest][:n]
    return [dataset.crystal(k).to_ase() for k in rows]


def _median(times: list[float]) -> float:
    return float(np.median(times))


def load_times(name: str, repeats: int = 5) -> dict[str, float]:
    """In a fresh interpreter each time: import, then the calculator by name (sha256 checks included)."""
    code = (
        "import time; t0 = time.perf_counter(); from aiida_cgcnn.ase import CGCNNCalculator; "
        f"t1 = time.perf_counter(); CGCNNCalculator(model={name!r}); t2 = time.perf_counter(); "
        "print(t1 - t0, t2 - t1)"
    )
    imports, loads = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        a, b = map(float, out.stdout.split())
        imports.append(a)
        loads.append(b)
    return {"import_s": _median(imports), "load_by_name_s": _median(loads)}


def wheel_size() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                tmp,
                str(ROOT),
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        models = sum(p.stat().st_size for n in available() for p in member_files(n))
        return {"wheel_mb": wheel.stat().st_size / 1e6, "model_files_mb": models / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phonons-300K")
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    atoms = _crystals(args.model, args.n)
    ensemble = Ensemble.pretrained(args.model)
    calc = CGCNNCalculator(model=ensemble)
    member = Predictor.from_checkpoint(member_files(args.model)[0])
    prop = calc.implemented_properties[0]

    calc.get_property(prop, atoms[0])  # warm-up
    member.predict(atoms[:1])
    single_ensemble, single_member = [], []
    for a in atoms:
        calc.reset()
        start = time.perf_counter()
        calc.get_property(prop, a)
        single_ensemble.append(time.perf_counter() - start)
        start = time.perf_counter()
        member.predict([a])
        single_member.append(time.perf_counter() - start)
    start = time.perf_counter()
    ensemble.predict(atoms, warn=False)
    batched_ensemble = time.perf_counter() - start
    start = time.perf_counter()
    member.predict(atoms)
    batched_member = time.perf_counter() - start

    results = {
        "model": args.model,
        "members": len(ensemble.members),
        "crystals": len(atoms),
        "atoms_per_crystal": [int(min(map(len, atoms))), int(max(map(len, atoms)))],
        "latency_ensemble_ms": 1e3 * _median(single_ensemble),
        "latency_one_member_ms": 1e3 * _median(single_member),
        "latency_ratio": _median(single_ensemble) / _median(single_member),
        "throughput_ensemble_per_s": len(atoms) / batched_ensemble,
        "throughput_one_member_per_s": len(atoms) / batched_member,
        **load_times(args.model),
        **wheel_size(),
    }
    for key, value in results.items():
        print(f"{key:30s} {value}")
    write_results("pretrained", results)


if __name__ == "__main__":
    main()
