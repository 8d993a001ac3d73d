"""Dataset file: write and load 100,000 structures (real MP/WBM/perovskite cells, repeated with jitter).

The baseline is the same structures read from a pymatgen ``Structure.as_dict()`` JSON list, the form the
source data come in, measured in the same run.

    python benchmarks/bench_dataset.py [--n 100000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import mixed_real_structures, write_results

from aiida_cgcnn.training.dataset import CrystalDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--baseline-n", type=int, default=2000)
    args = parser.parse_args()
    base = mixed_real_structures(2000)
    repeats = -(-args.n // len(base))
    index = np.tile(np.arange(len(base)), repeats)[: args.n]
    big = base.subset(index)
    big.frac_coords = big.frac_coords + np.random.default_rng(0).normal(0, 1e-3, big.frac_coords.shape)
    big.ids = np.array([f"s{k}" for k in range(args.n)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.npz"
        start = time.perf_counter()
        big.save(path)
        t_save = time.perf_counter() - start
        start = time.perf_counter()
        loaded = CrystalDataset.load(path)
        t_load = time.perf_counter() - start
        assert len(loaded) == args.n and np.array_equal(loaded.numbers, big.numbers)
        size_mb = path.stat().st_size / 1e6
        # baseline: pymatgen dicts in gzipped JSON, for a subset, scaled per structure
        small = [base.crystal(k).to_pymatgen().as_dict() for k in range(args.baseline_n)]
        json_path = Path(tmp) / "small.json.gz"
        with gzip.open(json_path, "wt") as handle:
            json.dump(small, handle)
        from pymatgen.core import Structure

        start = time.perf_counter()
        with gzip.open(json_path, "rt") as handle:
            structures = [Structure.from_dict(d) for d in json.load(handle)]
        t_json = (time.perf_counter() - start) / len(structures) * args.n
    print(
        f"{args.n} structures, {len(loaded.numbers)} atoms: file {size_mb:.0f} MB, save {t_save:.2f} s, "
        f"load {t_load:.2f} s"
    )
    print(
        f"pymatgen JSON baseline (measured on {args.baseline_n}, scaled): {t_json:.1f} s; "
        f"ratio {t_json / t_load:.0f}x"
    )
    write_results(
        "dataset",
        {
            "structures": args.n,
            "atoms": len(loaded.numbers),
            "file_mb": size_mb,
            "save_s": t_save,
            "load_s": t_load,
            "pymatgen_json_load_s_scaled": t_json,
            "ratio": t_json / t_load,
        },
    )


if __name__ == "__main__":
    main()
