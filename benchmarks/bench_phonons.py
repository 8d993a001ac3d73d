"""The hybridization paper's phonon comparison on real data: a de-CGCNN for U and Cv against DFT phonons
(phonondb's force sets through the ``cgcnn.phonon_comparison`` work chain) and against a universal
potential (CHGNet + phonopy) on the same held-out materials.

Stages (each reads what the previous wrote under ``--work``; run them in order)::

    python benchmarks/bench_phonons.py prepare   # training set without the held-out materials, descriptors
    python benchmarks/bench_phonons.py train     # de-CGCNN (sum pooling, all 28 descriptors), U and Cv
    python benchmarks/bench_phonons.py compare   # work chain: DFT force sets, then CHGNet, same materials
    python benchmarks/bench_phonons.py report    # benchmarks/results/phonons.json
    python benchmarks/bench_phonons.py timing    # time per material at the dataset's cell sizes

Held out from training: every material with a force-set archive in ``../shared/data/phonondb/forcesets``
and the trainer's 20 % test split. The work chain runs on the archives (DFT reference: their force
sets) and, with CHGNet as the force engine, on those plus further test-split materials (DFT
reference: phonondb's table, computed by the same phonopy from force sets not shipped here).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import require_data, write_results

from aiida_cgcnn.phonons.compare import compare_values
from aiida_cgcnn.training.public_data import phonondb_crystal

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")


def _mp_id(archive_name: str) -> str:
    """``materials-id-1000-bate-fm-3m-225`` -> ``mp-1000``."""
    return "mp-" + archive_name.split("-")[2]


def _table(data: Path) -> dict[str, dict]:
    with gzip.open(data / "phonondb/phonondb-300K.jsonl.gz", "rt") as handle:
        return {record["mp_id"]: record for record in map(json.loads, handle)}


def _archives(data: Path) -> dict[str, Path]:
    return {
        _mp_id(p.name[: -len(".tar.lzma")]): p
        for p in sorted((data / "phonondb/forcesets").glob("*.tar.lzma"))
    }


def prepare(args) -> None:
    from aiida_cgcnn.training.public_data import read_phonondb_thermal

    data = require_data()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dataset, skipped = read_phonondb_thermal(data / "phonondb/phonondb-300K.jsonl.gz", min_freq_thz=-0.5)
    held_out = set(_archives(data))
    keep = [k for k, sid in enumerate(dataset.ids) if str(sid) not in held_out]
    train = dataset.subset(keep)
    train.save(work / "phonondb-train.npz")
    print(
        f"{len(dataset)} stable materials ({len(skipped)} left out), {len(dataset) - len(keep)} held out "
        f"(force-set archives), {len(train)} to train/validate/test on"
    )
    start = time.time()
    subprocess.run(
        [
            EXECUTABLE,
            "descriptors",
            str(work / "phonondb-train.npz"),
            "-o",
            str(work / "phonondb-train-desc.npz"),
            "--workers",
            str(args.workers),
            "--skip-invalid",
        ],
        check=True,
    )
    (work / "descriptors-time.json").write_text(json.dumps({"seconds": time.time() - start, "n": len(train)}))


def train(args) -> None:
    work = Path(args.work)
    command = [
        EXECUTABLE,
        "train",
        str(work / "phonondb-train-desc.npz"),
        "-o",
        str(work / "de-cgcnn"),
        "--descriptors",
        "all",
        "--pooling",
        args.pooling,
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "64",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--workers",
        str(args.workers),
        "--skip-invalid",
        "--no-progress",
        "--time-budget",
        str(args.time_budget),
    ]
    print(" ".join(command))
    subprocess.run(command, check=True)


def _import_archives(archives: dict[str, Path]):
    from aiida_cgcnn.calculations.functions.phonons import import_phonopy_calculation

    return {mp.replace("-", "_"): import_phonopy_calculation(path) for mp, path in archives.items()}


def _run(builder, *namespaces: str) -> tuple[dict, dict]:
    """Run the work chain; its record for compare.json (with the dicts of the output ``namespaces``)
    and its outputs."""
    from aiida.engine import run_get_node

    start = time.time()
    results, node = run_get_node(builder)
    record = {
        "pk": node.pk,
        "exit_status": node.exit_status,
        "seconds": time.time() - start,
        "reference_seconds": _reference_seconds(node),
        "comparison": results["comparison"].get_dict(),
    }
    for namespace in namespaces:
        record[namespace] = {k: v.get_dict() for k, v in results.get(namespace, {}).items()}
    return record, results


def _structure(record: dict):
    """A phonondb table record's primitive cell as a pymatgen ``Structure``."""
    return phonondb_crystal(record).to_pymatgen()


def _builder(model, temperatures, phonopy, engine=None, structures=None, phonopy_data=None, label=""):
    from aiida import orm

    from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain

    builder = PhononComparisonWorkChain.get_builder()
    builder.metadata.label = label
    builder.model = model
    if structures:
        builder.structures = structures
    if phonopy_data:
        builder.phonopy_data = phonopy_data
    builder.reference.phonopy = orm.Dict(phonopy)
    builder.reference.temperatures = orm.List(temperatures)
    if engine:
        builder.reference.engine = orm.Dict(engine)
    return builder


_GAPS: dict[int, dict[str, float]] = {}


def _completion_gaps(top) -> dict[str, float]:
    """Compute time of each calcfunction under the process ``top``, by uuid.

    The reference work chains run interleaved in one process (one event loop): their nodes, and even
    their calcfunctions' nodes, are created long before they run, so neither span from ctime to mtime
    is the time spent on one crystal. Calcfunction bodies do block, one at a time, so the time from the
    previous calcfunction's end (or this one's creation, if later) to this one's end is its compute
    time, plus the work chains' cheap steps in between."""
    from aiida import orm

    nodes = sorted(
        (n for n in top.called_descendants if isinstance(n, orm.CalcFunctionNode)), key=lambda n: n.mtime
    )
    gaps, previous = {}, top.ctime
    for n in nodes:
        gaps[n.uuid] = (n.mtime - max(previous, n.ctime)).total_seconds()
        previous = max(previous, n.mtime)
    return gaps


def _calcfunction_seconds(node) -> float:
    """Compute time of a calcfunction; for one taken from the cache, of the node that computed it."""
    from aiida import orm

    while (source := node.base.extras.get("_aiida_cached_from", None)) is not None:
        node = orm.load_node(source)
    top = node
    while top.caller is not None:
        top = top.caller
    if top.pk not in _GAPS:
        _GAPS[top.pk] = _completion_gaps(top)
    return _GAPS[top.pk].get(node.uuid, 0.0)


def _reference_seconds(node) -> dict[str, float]:
    """Compute time of each crystal's reference: the sum of its calcfunctions' compute times
    (relaxation, set-up, forces, analysis; see :func:`_completion_gaps`)."""
    from aiida import orm

    return {
        n.label: sum(
            _calcfunction_seconds(c) for c in n.called_descendants if isinstance(c, orm.CalcFunctionNode)
        )
        for n in node.called
        if n.process_label == "PhononReferenceWorkChain"
    }


def compare(args) -> None:
    """The work chain with DFT force sets, then with CHGNet, on the held-out materials."""
    from aiida import load_profile, orm

    from aiida_cgcnn.data.model import ModelData

    load_profile(args.profile, allow_switch=True)
    data = require_data()
    work = Path(args.work)
    table = _table(data)
    archives = _archives(data)
    model = ModelData.get_or_create(work / "de-cgcnn" / "best.pt")
    out: dict = {"model": model.uuid, "runs": {}}

    # 1. DFT force sets (phonondb archives): reference = phonopy on the DFT forces, NAC where BORN exists
    dft_data = _import_archives(archives)
    out["runs"]["dft"], results = _run(
        _builder(model, [300.0], {"mesh": 50.0}, phonopy_data=dft_data, label="phonondb force sets")
    )
    seconds = out["runs"]["dft"]["seconds"]
    print(f"DFT force sets: {results['comparison']['n_compared']} compared in {seconds:.0f} s")

    # 2. CHGNet on the same set-ups (DFT's supercell and primitive matrices), relaxed by CHGNet first
    engine = {
        "calculator": "chgnet.model.dynamics.CHGNetCalculator",
        "kwargs": {"use_device": "cpu", "on_isolated_atoms": "warn"},
        "relax": {"fmax": args.fmax, "steps": 500, "cell": True},
    }
    out["runs"]["chgnet_archives"], results = _run(
        _builder(
            model,
            [300.0],
            {"mesh": 50.0},
            engine=engine,
            phonopy_data=dft_data,
            label="CHGNet on phonondb set-ups",
        ),
        "references",
    )
    seconds = out["runs"]["chgnet_archives"]["seconds"]
    print(f"CHGNet (archives): {results['comparison']['n_compared']} compared in {seconds:.0f} s")

    # 3. CHGNet on further held-out materials of the model's test split (phonondb primitive cells,
    #    supercells of at least --min-length Å), DFT reference from phonondb's table
    test_ids = []
    with open(work / "de-cgcnn" / "test_predictions.csv") as handle:
        test_ids = [row["id"] for row in csv.DictReader(handle)]
    rng = np.random.default_rng(0)
    candidates = [i for i in test_ids if table[i]["natoms"] <= args.max_atoms and i not in archives]
    # a prefix of one permutation: a larger --extra keeps the materials of a smaller one (and the
    # cached references of their work chains, with AiiDA's caching on)
    chosen = sorted(rng.permutation(candidates)[: args.extra].tolist())
    structures = {}
    for mp in chosen:
        node_ = orm.StructureData(pymatgen=_structure(table[mp]))
        node_.label = mp
        structures[mp.replace("-", "_")] = node_
    phonopy = {"mesh": 50.0, "min_supercell_length_angstrom": args.min_length}
    out["runs"]["chgnet_test"], results = _run(
        _builder(
            model,
            [300.0],
            phonopy,
            engine=engine,
            structures=structures,
            label="CHGNet on test-split materials",
        ),
        "references",
        "predictions",
    )
    seconds = out["runs"]["chgnet_test"]["seconds"]
    print(f"CHGNet (test split): {results['comparison']['n_compared']} compared in {seconds:.0f} s")
    (work / "compare.json").write_text(json.dumps(out, indent=1, default=float))


def _model_timing(work: Path, table: dict, ids: list[str]) -> dict:
    """Seconds per material of the hybrid model (descriptors + graph + network), one process."""

    from aiida_cgcnn.predict import Predictor

    predictor = Predictor.from_checkpoint(work / "de-cgcnn" / "best.pt")
    structures = [_structure(table[i]) for i in ids]
    predictor.predict(structures[:2], ids=ids[:2], workers=1)  # warm-up
    start = time.perf_counter()
    predictor.predict(structures, ids=ids, workers=1)
    batch = (time.perf_counter() - start) / len(ids)
    start = time.perf_counter()
    for sid, structure in zip(ids[:20], structures[:20], strict=False):
        predictor.predict([structure], ids=[sid], workers=1)
    single = (time.perf_counter() - start) / min(20, len(ids))
    return {"batch_seconds_per_material": batch, "single_seconds_per_material": single, "n": len(ids)}


def _plain_chgnet_timing(table: dict, ids: list[str], fmax: float, min_length: float) -> dict:
    """Seconds per material of CHGNet + phonopy without AiiDA (:func:`calculate_phonons`, the settings
    of the work chain runs: relaxation, supercells of at least ``min_length`` Å, mesh 50), for the
    provenance-free cost next to the work chain's."""
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_cgcnn.phonons import PhononSettings, calculate_phonons

    settings = PhononSettings(min_supercell_length_angstrom=min_length, mesh=50.0)
    seconds = {}
    for i in ids:
        structure = _structure(table[i])
        start = time.perf_counter()
        calculator = CHGNetCalculator(use_device="cpu", on_isolated_atoms="warn")
        calculate_phonons(
            AseAtomsAdaptor.get_atoms(structure),
            calculator,
            [300.0],
            settings,
            name=i,
            relax={"fmax": fmax, "steps": 500},
        )
        seconds[i] = time.perf_counter() - start
    values = list(seconds.values())
    return {"median": float(np.median(values)), "mean": float(np.mean(values)), "seconds": seconds}


def timing(args) -> None:
    """Time per material at the sizes of the dataset, not only the small cells of ``compare``: for
    test-split materials at quantiles of phonondb's primitive-cell sizes, plain CHGNet + phonopy
    (:func:`calculate_phonons`, no AiiDA, same settings) against the hybrid model."""
    data = require_data()
    work = Path(args.work)
    table = _table(data)
    with open(work / "de-cgcnn" / "test_predictions.csv") as handle:
        test_ids = [row["id"] for row in csv.DictReader(handle)]
    sizes = np.array([table[i]["natoms"] for i in test_ids])
    quantiles = [0.25, 0.5, 0.75, 0.9]
    picks = []
    for q in quantiles:
        target = np.quantile(sizes, q)
        order = np.argsort(np.abs(sizes - target), kind="stable")
        picks.append(next(test_ids[k] for k in order if test_ids[k] not in picks))
    chgnet = _plain_chgnet_timing(table, picks, args.fmax, args.min_length)
    model = _model_timing(work, table, picks)
    rows = {i: {"natoms": table[i]["natoms"], "chgnet_phonopy_s": chgnet["seconds"][i]} for i in picks}
    for i, q in zip(picks, quantiles, strict=True):
        print(
            f"{i}: {table[i]['natoms']} atoms (quantile {q}), "
            f"CHGNet + phonopy {rows[i]['chgnet_phonopy_s']:.1f} s"
        )
    print(f"hybrid model: {model['single_seconds_per_material']:.4f} s per material one by one")
    write_results(
        "phonons_timing",
        {
            "quantiles": quantiles,
            "materials": rows,
            "hybrid": model,
            "chgnet_phonopy": chgnet,
            "fmax": args.fmax,
            "min_supercell_length": args.min_length,
        },
    )


def report(args) -> None:
    data = require_data()
    work = Path(args.work)
    table = _table(data)
    runs = json.loads((work / "compare.json").read_text())["runs"]
    metrics = json.loads((work / "de-cgcnn" / "metrics.json").read_text())
    result: dict = {"training": {"metrics": metrics}}

    # the hybrid model on its whole test split (DFT values of phonondb's table)
    with open(work / "de-cgcnn" / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    ids = [r["id"] for r in rows]
    for prop, key in (("U", "U_kJmol"), ("Cv", "Cv_JKmol")):
        ref = [table[i][key] for i in ids]
        pred = [float(r[f"{prop}_pred"]) for r in rows]
        metrics_ = compare_values(ids, ref, pred)
        metrics_.pop("per_structure")
        result.setdefault("model_test_split", {})[prop] = metrics_

    # DFT references of every material run with CHGNet
    dft_values = {}
    for label, record in runs["dft"]["comparison"]["per_structure"].items():
        dft_values[label] = {
            "U_kJmol": record["U_reference"],
            "Cv_JKmol": record["Cv_reference"],
            "U_model": record["U_predicted"],
            "Cv_model": record["Cv_predicted"],
        }
    # the archives' predictions are for phonopy's primitive cells of the DFT unit cells; the work chain
    # gives the test-split materials' for the CHGNet-relaxed cells, the trainer's for phonondb's
    for d in dft_values.values():
        d.update({"U_model_dft_cell": d["U_model"], "Cv_model_dft_cell": d["Cv_model"]})
    test_rows = {r["id"]: r for r in rows}
    for label in runs["chgnet_test"]["references"]:
        mp = label.replace("_", "-")
        dft_values[label] = {
            "U_kJmol": table[mp]["U_kJmol"],
            "Cv_JKmol": table[mp]["Cv_JKmol"],
            "U_model_dft_cell": float(test_rows[mp]["U_pred"]),
            "Cv_model_dft_cell": float(test_rows[mp]["Cv_pred"]),
        }
        prediction = runs["chgnet_test"]["predictions"].get(label)
        if prediction:
            # per mole of the CHGNet-relaxed primitive cell, as the CHGNet reference (see below)
            scale = table[mp]["natoms"] / runs["chgnet_test"]["references"][label]["natoms"]
            dft_values[label].update(
                {"U_model": scale * prediction["U_kJmol"], "Cv_model": scale * prediction["Cv_JKmol"]}
            )
    chgnet = {}
    excluded = {}
    rescaled = {}
    for run in ("chgnet_archives", "chgnet_test"):
        for label, record in runs[run]["references"].items():
            if label in runs["dft"]["comparison"]["excluded"] and run == "chgnet_archives":
                continue  # DFT itself is unstable there
            if not record["stable"]:
                excluded[label] = f"CHGNet phonons unstable (lowest {record['min_freq_THz']:.2f} THz)"
                continue
            # U and Cv are per mole of phonopy's primitive cell; a CHGNet relaxation that raises the
            # symmetry gives a smaller one, so compare per mole of phonondb's cell (extensive: x N/N')
            n_dft = table[label.replace("_", "-")]["natoms"]
            scale = n_dft / record["natoms"]
            if scale != 1:
                rescaled[label] = (
                    f"CHGNet's relaxed primitive cell has {record['natoms']} atoms, phonondb's {n_dft}: "
                    f"CHGNet values (and the work chain's predictions for that cell) x {scale:g}"
                )
            chgnet[label] = {
                "U_kJmol": scale * record["U_kJmol"][0],
                "Cv_JKmol": scale * record["Cv_JKmol"][0],
            }
        for label, reason in runs[run]["comparison"]["excluded"].items():
            if label not in runs[run]["references"]:  # no CHGNet reference at all
                excluded[label] = reason
    common = sorted(set(chgnet) & {k for k, v in dft_values.items() if "U_model" in v})
    summary = {"materials": common, "n": len(common), "excluded": excluded, "rescaled": rescaled}
    for prop, key in (("U", "U_kJmol"), ("Cv", "Cv_JKmol")):
        dft = [dft_values[k][key] for k in common]
        for name, values in (
            ("hybrid", [dft_values[k][f"{prop}_model"] for k in common]),
            ("hybrid_dft_cells", [dft_values[k][f"{prop}_model_dft_cell"] for k in common]),
            ("chgnet", [chgnet[k][key] for k in common]),
        ):
            m = compare_values(common, dft, values)
            m.pop("per_structure")
            summary.setdefault(prop, {})[name] = m
    summary["per_material"] = {
        k: {
            "source": "force set" if k in runs["dft"]["comparison"]["per_structure"] else "phonondb table",
            **{
                f"{p}_{what}": v
                for p in ("U", "Cv")
                for what, v in (
                    ("dft", dft_values[k][f"{p}_{'kJmol' if p == 'U' else 'JKmol'}"]),
                    ("hybrid", dft_values[k][f"{p}_model"]),
                    ("hybrid_dft_cell", dft_values[k][f"{p}_model_dft_cell"]),
                    ("chgnet", chgnet[k][f"{p}_{'kJmol' if p == 'U' else 'JKmol'}"]),
                )
            },
        }
        for k in common
    }
    result["same_materials"] = summary
    result["dft_force_sets"] = {
        k: runs["dft"]["comparison"][k] for k in ("U", "Cv", "n_compared", "excluded")
    }
    chgnet_seconds = [
        s for run in ("chgnet_archives", "chgnet_test") for s in runs[run]["reference_seconds"].values()
    ]
    dft_seconds = list(runs["dft"]["reference_seconds"].values())
    result["timing"] = {
        "hybrid": _model_timing(work, table, [k.replace("_", "-") for k in common]),
        "chgnet_phonopy_seconds_per_material": {
            "median": float(np.median(chgnet_seconds)),
            "mean": float(np.mean(chgnet_seconds)),
            "n": len(chgnet_seconds),
        },
        "chgnet_phonopy_plain_python_seconds_per_material": _plain_chgnet_timing(
            table,
            [k.replace("_", "-") for k in common if k not in runs["dft"]["comparison"]["per_structure"]][
                : args.timing_sample
            ],
            args.fmax,
            args.min_length,
        ),
        "phonopy_on_dft_forces_seconds_per_material": {
            "median": float(np.median(dft_seconds)),
            "mean": float(np.mean(dft_seconds)),
        },
    }
    write_results("phonons", result)
    print(json.dumps({k: result[k] for k in ("same_materials", "timing")}, indent=1, default=float)[:4000])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["prepare", "train", "compare", "report", "timing"])
    parser.add_argument("--work", default="runs/phonons", help="Working folder [runs/phonons].")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--pooling", default="sum")
    parser.add_argument("--time-budget", type=float, default=3 * 3600)
    parser.add_argument("--profile", default=None, help="AiiDA profile [the default profile].")
    parser.add_argument("--extra", type=int, default=58, help="Further test-split materials for CHGNet [58].")
    parser.add_argument("--max-atoms", type=int, default=8, help="Largest primitive cell of those [8].")
    parser.add_argument(
        "--min-length", type=float, default=10.0, help="Their supercells' minimum width, Å [10]."
    )
    parser.add_argument(
        "--timing-sample", type=int, default=8, help="Materials timed again without AiiDA in report [8]."
    )
    parser.add_argument("--fmax", type=float, default=1e-3, help="CHGNet relaxation force criterion, eV/Å.")
    args = parser.parse_args()
    # one thread per process: with more, torch (CHGNet, training) fights the other processes for the cores
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    {"prepare": prepare, "train": train, "compare": compare, "report": report, "timing": timing}[args.stage](
        args
    )


if __name__ == "__main__":
    main()
