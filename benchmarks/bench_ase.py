"""ASE calculator: single-structure latency and batched throughput on CPU, graph construction included.

Small cells: 100 real structures of at most 20 atoms (MP binaries), or EMT alloys without the data.
Large cells: 20 cells of 200 atoms (5x5x1 supercells of 8-atom alloys). Model: CGCNN with the
reference sizes. The ratio batched / one-by-one is printed from the same run.

    python benchmarks/bench_ase.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from common import load, write_results

from aiida_cgcnn.ase import CGCNNCalculator
from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.public_data import shared_data_dir
from aiida_cgcnn.training.trainer import Trainer


def small_cells(n: int = 100):
    if shared_data_dir() is not None:
        dataset = load("mp_log10_K", limit=400)
        crystals = [c for c in dataset.crystals() if c.num_atoms <= 20][:n]
        return [c.to_ase() for c in crystals]
    return emt_alloys(n, seed=1)[0]


def main() -> None:
    torch.set_num_threads(1)
    structures, energies = emt_alloys(40, seed=0)
    dataset, _ = CrystalDataset.from_structures(structures, energies, target_names=["e"], units=["eV/atom"])
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Trainer(dataset, tmp, train_config={"epochs": 1}, progress=False).fit().best_checkpoint
        calc = CGCNNCalculator(checkpoint)
        groups = {
            "small (<= 20 atoms)": small_cells(),
            "200 atoms": [a.repeat((5, 5, 1)) for a in structures[:20]],
        }
        results = {}
        for label, images in groups.items():
            calc.predict(images[:2])  # warm up
            start = time.perf_counter()
            single = []
            for atoms in images:
                calc.reset()
                single.append(calc.get_property("e", atoms))
            t_single = time.perf_counter() - start
            start = time.perf_counter()
            batched = calc.predict(images)["e"]
            t_batched = time.perf_counter() - start
            np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
            n = len(images)
            atoms_mean = float(np.mean([len(a) for a in images]))
            results[label] = {
                "structures": n,
                "atoms_mean": atoms_mean,
                "latency_ms": 1000 * t_single / n,
                "one_by_one_per_s": n / t_single,
                "batched_per_s": n / t_batched,
                "ratio": t_single / t_batched,
            }
            print(
                f"{label:20s} n={n:3d} ({atoms_mean:.0f} atoms): "
                f"latency {1000 * t_single / n:7.1f} ms/structure, one by one {n / t_single:7.1f}/s, "
                f"batched {n / t_batched:7.1f}/s, ratio {t_single / t_batched:.1f}x"
            )
    write_results("ase", {"threads": 1, "results": results})


if __name__ == "__main__":
    main()
