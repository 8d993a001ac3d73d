"""Shared helpers for the benchmarks: real data, results files."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.public_data import (
    read_castelli_perovskites,
    read_matcalc_structures,
    shared_data_dir,
)

RESULTS = Path(__file__).parent / "results"


def require_data() -> Path:
    data = shared_data_dir()
    if data is None:
        sys.exit("benchmarks need ../shared/data (or $AIIDA_CGCNN_DATA)")
    return data


def load(name: str, limit: int | None = None) -> CrystalDataset:
    """The real datasets of the accuracy benchmark, by name."""
    data = require_data()
    if name == "perovskites":
        dataset, _ = read_castelli_perovskites(
            data / "perovskites/castelli-perov5-part-a.csv.gz", limit=limit
        )
    elif name == "mp_log10_K":
        dataset, _ = read_matcalc_structures(
            data / "mp-elasticity/mp-binary-pbe-elasticity-2025.1.json.gz",
            {"bulk_modulus_vrh": "GPa"},
            "mp_id",
            transform="log10",
            limit=limit,
        )
    elif name == "mp_log10_G":
        dataset, _ = read_matcalc_structures(
            data / "mp-elasticity/mp-binary-pbe-elasticity-2025.1.json.gz",
            {"shear_modulus_vrh": "GPa"},
            "mp_id",
            transform="log10",
            limit=limit,
        )
    elif name == "wbm_formation":
        dataset, _ = read_matcalc_structures(
            data / "wbm/wbm-random-pbe52-equilibrium-2025.1.json.gz",
            {"formation_energy_per_atom": "eV/atom"},
            "material_id",
            limit=limit,
        )
    else:
        raise ValueError(name)
    return dataset


def mixed_real_structures(n: int) -> CrystalDataset:
    """n real structures: MP binaries, then WBM, then perovskites (varied sizes and chemistries)."""
    parts, total = [], 0
    for name in ("mp_log10_K", "wbm_formation", "perovskites"):
        if total >= n:
            break
        part = load(name, limit=n - total)
        parts.append(part)
        total += len(part)
    crystals = [c for part in parts for c in part.crystals()]
    return CrystalDataset.from_crystals(crystals, np.zeros((len(crystals), 1)), ["none"], [""])


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor(),
        "cores": __import__("os").cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    results = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **results}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"results written to {path}")
    return path
