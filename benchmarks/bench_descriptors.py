"""Descriptor throughput: aiida-cgcnn's engine against matminer, same structures, same run.

matminer runs the featurizers the hybridization paper used, with their defaults:
StructuralHeterogeneity(), SiteStatsFingerprint of AverageBondLength(VoronoiNN()),
AverageBondAngle(VoronoiNN()) and CoordinationNumber.from_preset("VoronoiNN"), DensityFeatures(),
StructuralComplexity(), GlobalSymmetryFeatures(), and pymatgen's primitive cell + Niggli reduction.
Then every value of every structure is compared (relative tolerance 1e-6, absolute 1e-9).

    python benchmarks/bench_descriptors.py [--n 60] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from common import require_data, write_results

from aiida_cgcnn.descriptors import ALL_DESCRIPTORS, CRYSTAL_SYSTEMS, DescriptorSettings, compute_descriptors
from aiida_cgcnn.descriptors.global_descriptors import _element_tables
from aiida_cgcnn.training.public_data import read_phonondb_thermal

SH_NAMES = [
    "MAD_in_rela_bond_len",
    "max_rela_bond_len",
    "min_rela_bond_len",
    "min_neighb_dist_var",
    "max_neighb_dist_var",
    "range_neighb_dist_var",
    "mean_neighb_dist_var",
    "dev_neighb_dist_var",
    "MAD_in_rela_atom_vol",
]


def matminer_descriptors(structure) -> dict[str, float]:
    """The paper's descriptors with matminer and pymatgen, every featurizer with its defaults."""
    from matminer.featurizers.site import AverageBondAngle, AverageBondLength, CoordinationNumber
    from matminer.featurizers.structure import (
        DensityFeatures,
        GlobalSymmetryFeatures,
        SiteStatsFingerprint,
        StructuralComplexity,
        StructuralHeterogeneity,
    )
    from pymatgen.core.local_env import VoronoiNN

    out = dict(zip(SH_NAMES, StructuralHeterogeneity().featurize(structure), strict=True))
    for featurizer, stem in ((AverageBondLength, "avg_bond_len"), (AverageBondAngle, "avg_bond_ang")):
        mean, std = SiteStatsFingerprint(featurizer(VoronoiNN())).featurize(structure)
        out[f"mean_{stem}"], out[f"std_{stem}"] = mean, std
    cn = CoordinationNumber.from_preset("VoronoiNN")
    out["mean_CN_Voronoi"], out["std_CN_Voronoi"] = SiteStatsFingerprint(cn).featurize(structure)
    out["density"], out["vpa"], out["packing_frac"] = DensityFeatures().featurize(structure)
    out["struct_comp_atom"], out["struct_comp_cell"] = StructuralComplexity().featurize(structure)
    number, system = GlobalSymmetryFeatures(["spacegroup_num", "crystal_system"]).featurize(structure)
    out["space_group_num"], out["crys_sys"] = number, CRYSTAL_SYSTEMS.index(system) + 1
    primitive = structure.get_primitive_structure()
    niggli = primitive.lattice.get_niggli_reduced_lattice()
    out["natoms"] = len(primitive)
    out["a"], out["b"], out["c"] = sorted(niggli.abc, reverse=True)
    out["alpha"], out["beta"], out["gamma"] = sorted(niggli.angles, reverse=True)
    return out


def agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[int, list[str]]:
    """Structures whose every descriptor agrees (rtol 1e-6, atol 1e-9), and the descriptors that differ."""
    close = np.isclose(ours, reference, rtol=1e-6, atol=1e-9)
    differing = [ALL_DESCRIPTORS[j] for j in np.nonzero(~close.all(axis=0))[0]]
    return int(close.all(axis=1).sum()), differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    data = require_data()
    dataset, _ = read_phonondb_thermal(data / "phonondb/phonondb-300K.jsonl.gz")
    radii = _element_tables()[1]  # packing_frac needs every element's atomic radius
    crystals = [c for c in dataset.crystals() if np.all(np.isfinite(radii[c.numbers]))]
    picks = np.sort(np.random.default_rng(args.seed).choice(len(crystals), args.n, replace=False))
    crystals = [crystals[k] for k in picks]
    structures = [c.to_pymatgen() for c in crystals]  # built outside the timed regions
    atoms = np.array([c.num_atoms for c in crystals])
    names = list(ALL_DESCRIPTORS)
    print(
        f"{len(crystals)} phonondb structures (random, seed {args.seed}), {atoms.sum()} atoms "
        f"(mean {atoms.mean():.1f}, max {atoms.max()})",
        flush=True,
    )

    rows, seconds = [], []
    for crystal, structure in zip(crystals, structures, strict=True):
        tick = time.perf_counter()
        values = matminer_descriptors(structure)
        seconds.append(time.perf_counter() - tick)
        rows.append([values[n] for n in names])
        print(f"  matminer {crystal.id}: {crystal.num_atoms} atoms, {seconds[-1]:.1f} s", flush=True)
    reference = np.array(rows)
    t_matminer = float(np.sum(seconds))
    print(
        f"matminer (the paper's featurizers):   {t_matminer:8.2f} s  "
        f"({len(crystals) / t_matminer:7.2f} structures/s)",
        flush=True,
    )

    start = time.perf_counter()
    table = compute_descriptors(crystals, names, workers=1)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    parallel = compute_descriptors(crystals, names, workers=args.workers)
    t_parallel = time.perf_counter() - start
    assert not table.failures, table.failures
    assert np.array_equal(table.values, parallel.values)
    ratio, ratio_parallel = t_matminer / t_ours, t_matminer / t_parallel
    print(
        f"aiida-cgcnn, 1 process:               {t_ours:8.2f} s  ({len(crystals) / t_ours:7.2f} structures/s)"
        f"  ratio {ratio:.0f}x",
        flush=True,
    )
    print(
        f"aiida-cgcnn, {args.workers} processes:             {t_parallel:8.2f} s  "
        f"({len(crystals) / t_parallel:7.2f} structures/s)  ratio {ratio_parallel:.0f}x",
        flush=True,
    )

    # agreement, outside the timed regions
    agreeing, differing = agreement(table.values, reference)
    print(
        f"agreement with matminer: {agreeing}/{len(crystals)} structures identical in all {len(names)} "
        f"descriptors; descriptors that differ somewhere: {differing or 'none'}"
    )
    write_results(
        "descriptors",
        {
            "structures": len(crystals),
            "atoms": int(atoms.sum()),
            "source": "phonondb-300K (stable), random",
            "seed": args.seed,
            "descriptors": names,
            "matminer_s": t_matminer,
            "matminer_s_per_structure": dict(zip([c.id for c in crystals], seconds, strict=True)),
            "ours_1_process_s": t_ours,
            "ours_parallel_s": t_parallel,
            "workers": args.workers,
            "speedup_1_process": ratio,
            "speedup_parallel": ratio_parallel,
            "matminer_ms_per_structure": 1e3 * t_matminer / len(crystals),
            "ours_ms_per_structure": 1e3 * t_ours / len(crystals),
            "face_tol": DescriptorSettings().face_tol,
            "structures_agreeing": agreeing,
            "descriptors_differing": differing,
        },
    )


if __name__ == "__main__":
    main()
