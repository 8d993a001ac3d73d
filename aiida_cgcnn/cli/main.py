"""Click commands: ``dataset``, ``train``, ``predict``, ``demo``."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from .common import EXIT_CODES, checked, guarded, load_config, write_skipped, write_status

__all__ = ["EXIT_CODES", "cli", "main"]


def _store_copy(path: Path, directory: Path) -> Path:
    """Copy a dataset file to ``directory/<sha256>.npz`` atomically, unless it is there already."""
    import hashlib
    import os
    import shutil
    import tempfile

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{digest}.npz"
    if not target.exists():
        handle = tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False)
        handle.close()
        shutil.copyfile(path, handle.name)
        os.replace(handle.name, target)
    return target


def _relaunch_distributed(nproc: int) -> int:
    """Run this same command under ``torch.distributed.run`` in ``nproc`` processes; its exit code."""
    import subprocess

    arguments, skip = [], False
    for argument in sys.argv[1:]:
        if skip:
            skip = False
        elif argument == "--nproc-per-node":
            skip = True
        elif not argument.startswith("--nproc-per-node="):
            arguments.append(argument)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "aiida_cgcnn.cli",
        *arguments,
    ]
    return subprocess.call(command)


def _file_ids(paths) -> list[str]:
    """File stems as ids (``mp-1234.cif`` -> ``mp-1234``, as in Python); file names where stems clash
    (a.cif, a.vasp), the paths as given where names clash too (a/POSCAR, b/POSCAR)."""
    for ids in ([p.stem for p in paths], [p.name for p in paths]):
        if len(set(ids)) == len(ids):
            return ids
    return [str(p) for p in paths]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aiida-cgcnn")
def cli() -> None:
    """Crystal graph neural networks: build datasets, train, predict. No AiiDA profile needed."""


# --- dataset ------------------------------------------------------------------------------------


@cli.group()
def dataset() -> None:
    """Build and inspect portable dataset files (.npz): from CGCNN/ALIGNN data directories
    (create) or tables of structures and values (import)."""


@dataset.command("create")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Dataset file (.npz).")
@click.option("--target-name", "target_names", multiple=True, help="Name of each target column.")
@click.option("--unit", "units", multiple=True, help="Unit of each target column.")
@click.option("--task", type=click.Choice(["regression", "classification"]), default="regression")
@click.option("--skip-invalid", is_flag=True, help="Leave invalid structures out and list them.")
@guarded("output")
def dataset_create(source: Path, output: Path, target_names, units, task, skip_invalid) -> None:
    """Create a dataset file from a CGCNN/ALIGNN data directory (id_prop.csv + structure files)."""
    from ..training.dataset import CrystalDataset

    data, skipped = CrystalDataset.from_cgcnn_directory(
        source, target_names=target_names or None, units=units or None, task=task, skip_invalid=skip_invalid
    )
    data.save(output)
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Skipped {len(skipped)} invalid structure(s): see {output.with_suffix('.skipped.txt')}")
    click.echo(f"Wrote {len(data)} structures to {output}")


def _target_option(text: str) -> tuple[str, str]:
    key, sep, unit = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r}: write KEY=UNIT, e.g. U_kJmol=kJ/mol (an empty unit: KEY=)")
    return key.strip(), unit.strip()


@dataset.command("import")
@click.argument("table", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Dataset file (.npz).")
@click.option(
    "-t",
    "--target",
    "targets",
    multiple=True,
    required=True,
    help="KEY=UNIT: the record key of a target value and its unit; repeat for several targets.",
)
@click.option("--target-name", "target_names", multiple=True, help="Name of each target (default: its KEY).")
@click.option(
    "--id", "id_key", help="Record key of the structure id [first of id, material_id, mp_id, jid, ...]."
)
@click.option("--structure", "structure_key", help="Record key of the structure [found automatically].")
@click.option(
    "--where",
    multiple=True,
    help="Keep only records with KEY OP VALUE (OP: >=, <=, >, <, ==, !=), e.g. 'min_freq_THz>=-0.5'.",
)
@click.option("--log10", is_flag=True, help="Learn log10 of the (positive) values.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "json", "csv", "ase-db"]),
    default="auto",
    show_default=True,
    help="Table format; auto: from the file name (.jsonl, .json, .csv, each optionally .gz; .db).",
)
@click.option("--limit", type=int, help="Read only the first LIMIT records.")
@click.option("--skip-invalid", is_flag=True, help="Leave invalid structures out and list them.")
@guarded("output")
def dataset_import(
    table: Path,
    output: Path,
    targets,
    target_names,
    id_key,
    structure_key,
    where,
    log10,
    fmt,
    limit,
    skip_invalid,
) -> None:
    """Create a dataset file from a TABLE of structures and values: JSON Lines, JSON, CSV or an ASE
    database. A record's structure is a pymatgen Structure dict, lattice + species + frac_coords
    arrays, CIF/POSCAR text or a structure file's path.

    \b
    aiida-cgcnn dataset import phonondb-300K.jsonl.gz -o phonons.npz --id mp_id \\
        -t U_kJmol=kJ/mol -t 'Cv_JKmol=J/(K mol)' --where 'min_freq_THz>=-0.5'
    """
    from ..training.tables import read_table

    data, skipped = read_table(
        table,
        dict(_target_option(t) for t in targets),
        target_names=target_names or None,
        id_key=id_key,
        structure_key=structure_key,
        where=where,
        log10=log10,
        fmt=fmt,
        limit=limit,
        skip_invalid=skip_invalid,
    )
    data.save(output)
    filtered = data.metadata.get("filtered_out", 0)
    if filtered:
        click.echo(f"Left out {filtered} record(s) by --where {' '.join(where)}")
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Skipped {len(skipped)} invalid structure(s): see {output.with_suffix('.skipped.txt')}")
    click.echo(f"Wrote {len(data)} structures to {output}")


@dataset.command("info")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@guarded("path")
def dataset_info(path: Path) -> None:
    """Print a dataset file's header as JSON."""
    from ..training.dataset import CrystalDataset

    click.echo(json.dumps(CrystalDataset.load(path).header(), indent=2))


# --- train --------------------------------------------------------------------------------------


@dataclass
class _TrainOptions:
    """The ``train`` command's options, as click passes them."""

    config_path: Path | None = None
    preset_name: str | None = None
    architecture: str | None = None
    pooling: str | None = None
    conv: str | None = None
    precision: str | None = None
    task: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    scheduler: str | None = None
    loss: str | None = None
    loss_per_atom: bool | None = None
    max_edges: int | None = None
    patience: int | None = None
    seed: int | None = None
    split: tuple[float, float, float] | None = None
    time_budget: float | None = None
    time_margin: float | None = None
    max_radius: float | None = None
    resume: Path | None = None
    init_from: Path | None = None
    skip_invalid: bool = False
    cache_dir: Path | None = None
    store_dataset: Path | None = None
    workers: int | None = None
    device: str = "auto"
    progress: bool | None = None
    nproc_per_node: int = 1
    descriptor_spec: str | None = None


@dataclass
class _TrainSettings:
    """What the trainer gets: a preset, then the config file, then the options, each overriding."""

    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    atom_properties: list[str] | None = None
    descriptors: str | None = None
    skip_invalid: bool = False


def _train_settings(options: _TrainOptions) -> _TrainSettings:
    """Merge the preset, the ``--config`` file and the options into the trainer's settings."""
    config = load_config(options.config_path)
    recipe: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    if options.preset_name is not None:
        from ..training.presets import preset

        recipe = preset(options.preset_name)
    settings = _TrainSettings(
        model={**recipe["model"], **config.get("model", {})},
        train={**recipe["train"], **config.get("train", {})},
        graph=dict(config.get("graph", {})),
        atom_properties=config.get("atom_properties"),
        descriptors=options.descriptor_spec or config.get("descriptors"),
        skip_invalid=options.skip_invalid or bool(config.get("skip_invalid", False)),
    )
    architecture = options.architecture
    if architecture == "de-alignn":  # ALIGNN + descriptors: the hybrid is the dataset's features
        architecture = "alignn"
        settings.descriptors = settings.descriptors or "all"
    model_options = {
        "architecture": architecture,
        "pooling": options.pooling,
        "conv": options.conv,
        "precision": options.precision,
    }
    settings.model.update({k: v for k, v in model_options.items() if v is not None})
    train_options = {
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "optimizer": options.optimizer,
        "scheduler": options.scheduler,
        "patience": options.patience,
        "seed": options.seed,
        "time_budget": options.time_budget,
        "time_margin": options.time_margin,
        "loss": options.loss,
        "loss_per_atom": options.loss_per_atom,
        "max_edges_per_batch": options.max_edges,
    }
    settings.train.update({k: v for k, v in train_options.items() if v is not None})
    if options.split is not None:
        settings.train.update(
            dict(zip(("train_ratio", "val_ratio", "test_ratio"), options.split, strict=True))
        )
    if options.max_radius is not None:
        settings.graph["max_radius"] = options.max_radius
    if settings.descriptors and settings.descriptors.strip().lower() != "none":
        from ..descriptors.definitions import resolve_names

        checked("--descriptors", resolve_names, settings.descriptors)
    return settings


def _training_data(data: Path, settings: _TrainSettings, options: _TrainOptions):
    """The dataset with its selected features, and the structures left out while reading it."""
    from ..training.dataset import load_dataset

    dataset_, skipped = load_dataset(
        data, skip_invalid=settings.skip_invalid, task=options.task or "regression"
    )
    if settings.descriptors:
        from ..descriptors.hybrid import select_features

        dataset_, more = select_features(
            dataset_, settings.descriptors, skip_invalid=settings.skip_invalid, workers=options.workers
        )
        skipped = skipped + more
    if options.store_dataset is not None and data.suffix == ".npz":
        _store_copy(data, options.store_dataset)
    return dataset_, skipped


def _fit(dataset_, skipped, output_dir: Path, settings: _TrainSettings, options: _TrainOptions):
    """Train; the trainer and its result."""
    from ..graph.crystal_graph import GraphSettings
    from ..training.trainer import Trainer

    output_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = options.cache_dir if options.cache_dir is not None else output_dir.parent / ".graph-cache"
    try:  # also when the trainer fails to start: live gloo/NCCL threads abort the process at exit
        trainer = Trainer(
            dataset_,
            output_dir,
            model_config=settings.model,
            train_config=settings.train,
            # none given: a resumed run keeps its checkpoint's graphs
            graph_settings=GraphSettings.from_dict(settings.graph) if settings.graph else None,
            skip_invalid=settings.skip_invalid,
            cache_dir=cache_dir,
            workers=options.workers,
            device=options.device,
            resume=options.resume,
            init_from=options.init_from,
            progress=options.progress,
            atom_properties=settings.atom_properties,
            skipped=skipped,
        )
        return trainer, trainer.fit()
    finally:
        import gc

        import torch.distributed

        if torch.distributed.is_initialized():
            # DDP's reducer holds the process group; collected at interpreter exit, its gloo threads abort
            gc.collect()
            torch.distributed.destroy_process_group()


def _report_training(output_dir: Path, result) -> None:
    """skipped.txt, status.json and a one-line summary; exit 3 when the time budget stopped training."""
    write_skipped(output_dir / "skipped.txt", result.skipped)
    status = "time_budget" if result.stopped_reason == "time_budget" else "completed"
    message = {
        "completed": f"trained {result.epochs_run} epochs",
        "early_stopping": f"stopped early after {result.epochs_run} epochs",
        "paused": f"paused after {result.epochs_run} epochs (stop_epoch); resume with --resume last.pt",
        "time_budget": "stopped before the time budget ran out; resume with --resume last.pt",
    }[result.stopped_reason]
    write_status(
        output_dir,
        status,
        message,
        stopped_reason=result.stopped_reason,
        skipped=[asdict(s) for s in result.skipped],
    )
    test = result.metrics.get("test", {})
    summary = ", ".join(f"{k} {v:.4g}" for k, v in test.items() if isinstance(v, float))
    for target, metrics in test.get("per_target", {}).items():
        summary += f"; {target}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    click.echo(
        f"{message}; best checkpoint {result.best_checkpoint}" + (f"; test {summary}" if summary else "")
    )
    if status != "completed":
        sys.exit(EXIT_CODES[status])


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("run"), show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    help="JSON file with 'model', 'train' and 'graph' sections; options below override it.",
)
@click.option(
    "--model",
    "architecture",
    type=click.Choice(["cgcnn", "alignn", "de-alignn"]),
    help="Architecture; de-alignn is ALIGNN with the hybridization paper's descriptors "
    "(--descriptors, all of them by default) [cgcnn].",
)
@click.option(
    "--preset",
    "preset_name",
    type=click.Choice(["alignn-paper"]),
    help="A published training recipe; --config and the options below override it.",
)
@click.option("--pooling", type=click.Choice(["mean", "sum", "site", "sum-vector"]), help="Readout [mean].")
@click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16-mixed"]),
    help="ALIGNN: matrix products with bfloat16 factors, the rest in float32 (about 2x per epoch on a "
    "CPU with AVX-512 BF16; time both where the hardware differs) [float32].",
)
@click.option(
    "--conv", type=click.Choice(["gated", "simple"]), help="Eq. 5 (gated) or Eq. 4 (simple) [gated]."
)
@click.option(
    "--task",
    type=click.Choice(["regression", "classification"]),
    default=None,
    help="For data directories [regression].",
)
@click.option("--epochs", type=int, help="Epochs in all; with --resume, more than done continues the run.")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]))
@click.option("--scheduler", type=click.Choice(["none", "cosine", "onecycle", "step"]))
@click.option("--loss", type=click.Choice(["mse", "l1", "huber"]), help="Regression loss [mse].")
@click.option(
    "--loss-per-atom",
    is_flag=True,
    default=None,
    help="Sum pooling: compare values per atom in the loss, so small and large cells weigh alike.",
)
@click.option(
    "--max-edges",
    "max_edges",
    type=int,
    help="Also cap the graph edges per batch, so that batches of large cells fit in memory.",
)
@click.option("--patience", type=int, help="Early stopping patience (epochs).")
@click.option("--seed", type=int)
@click.option(
    "--split", type=(float, float, float), default=None, help="Train/val/test ratios [0.6 0.2 0.2]."
)
@click.option("--time-budget", type=float, help="Seconds for the whole run (e.g. the walltime).")
@click.option("--time-margin", type=float, help="Seconds kept free before the budget ends [60].")
@click.option(
    "--max-radius", type=float, help="Widen the neighbour search up to this radius for isolated atoms."
)
@click.option(
    "--resume",
    type=click.Path(exists=True, path_type=Path),
    help="Continue from a last.pt: a stopped run, or a finished one for more --epochs (also --patience, "
    "--time-budget, --time-margin may change; other settings must match the checkpoint's).",
)
@click.option(
    "--init-from", type=click.Path(exists=True, path_type=Path), help="Fine-tune from a checkpoint."
)
@click.option("--skip-invalid", is_flag=True, help="Leave invalid structures out (listed in skipped.txt).")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), help="Graph cache directory [OUTPUT_DIR/../.graph-cache]."
)
@click.option(
    "--store-dataset",
    type=click.Path(path_type=Path),
    help="Also keep a copy of the dataset file in this directory, named by its sha256, for reuse.",
)
@click.option("--workers", type=int, help="Processes for graph construction [cores, at most 8].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [on for terminals].")
@click.option(
    "--nproc-per-node",
    type=int,
    default=1,
    show_default=True,
    help="Train data-parallel in this many processes (GPUs) of the node, relaunched under torchrun.",
)
@click.option(
    "--descriptors",
    "descriptor_spec",
    help="Hybrid model (de-CGCNN): 'all', 'local', 'global' or comma-separated descriptor names, "
    "kept from DATA when stored there, computed otherwise; 'none' ignores DATA's features "
    "[DATA's features as they are].",
)
@guarded("output_dir", reserve=True)
def train(data: Path, output_dir: Path, **given: Any) -> None:
    """Train a model on DATA (a dataset file or a CGCNN-style directory); write checkpoints,
    metrics.json, learning_curve.csv and test_predictions.csv to OUTPUT_DIR."""
    options = _TrainOptions(**given)
    if options.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        sys.exit(_relaunch_distributed(options.nproc_per_node))
    settings = _train_settings(options)
    dataset_, skipped = _training_data(data, settings, options)
    trainer, result = _fit(dataset_, skipped, output_dir, settings, options)
    code: Any = 0
    try:
        if trainer.rank == 0:
            _report_training(output_dir, result)
    except SystemExit as stop:
        code = stop.code
        raise
    finally:
        if trainer.world > 1:
            # a rank whose interpreter finalizes with gloo's threads alive aborts (SIGABRT) after its work
            # is done: every file is written, so leave without finalizers
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(code or 0))


# --- predict ------------------------------------------------------------------------------------


@cli.command()
@click.argument("inputs", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option(
    "-m",
    "--model",
    help="A pretrained model by name (`aiida-cgcnn pretrained list`) instead of a CHECKPOINT: "
    "every argument is then DATA, and the CSV gives mean, calibrated std, per-atom values of "
    "extensive targets and an out_of_domain column.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("predictions.csv"),
    show_default=True,
    help="Predictions CSV (input order).",
)
@click.option(
    "--sites", type=click.Path(path_type=Path), help="Per-site contributions CSV (sum/site pooling)."
)
@click.option("--skip-invalid", is_flag=True, help="Predict the valid structures, list the others.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, auto, cuda or cuda:N.")
@click.option("--workers", type=int)
@click.option(
    "--store-dataset",
    type=click.Path(path_type=Path),
    help="Also keep a copy of a dataset file in this directory, named by its sha256, for reuse.",
)
@guarded("output")
def predict(
    inputs: tuple[Path, ...],
    model: str | None,
    output: Path,
    sites,
    skip_invalid,
    batch_size,
    device,
    workers,
    store_dataset,
) -> None:
    """Predict with CHECKPOINT (or --model NAME) for DATA: a dataset file, a CGCNN-style directory or
    structure files.

    \b
    aiida-cgcnn predict run/best.pt structures/*.cif
    aiida-cgcnn predict --model phonons-300K structures/*.cif
    """
    from ..predict import Predictor
    from ..training.trainer import resolve_device

    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise click.UsageError(f"no such file or directory: {', '.join(missing)}")
    if model is not None:
        _predict_pretrained(model, inputs, output, skip_invalid, batch_size, workers, resolve_device(device))
        if store_dataset is not None and len(inputs) == 1 and inputs[0].suffix == ".npz":
            _store_copy(inputs[0], store_dataset)
        return
    if len(inputs) < 2:
        raise click.UsageError("give a CHECKPOINT and DATA, or --model NAME and DATA")
    checkpoint, data = inputs[0], inputs[1:]
    predictor = Predictor.from_checkpoint(checkpoint, device=resolve_device(device))
    dataset_, skipped = _read_inputs(data, skip_invalid)
    if store_dataset is not None and len(data) == 1 and data[0].suffix == ".npz":
        _store_copy(data[0], store_dataset)
    result = predictor.predict(dataset_, skip_invalid=skip_invalid, batch_size=batch_size, workers=workers)
    skipped = skipped + result.skipped
    output.parent.mkdir(parents=True, exist_ok=True)
    index = {sid: k for k, sid in enumerate(map(str, dataset_.ids))}
    targets = dataset_.targets[[index[i] for i in result.ids]]
    has_targets = (
        predictor.task == "regression"
        and targets.shape[1] == len(predictor.target_names)
        and bool(len(targets))
        and bool((targets == targets).all())
    )
    result.write_csv(output, targets if has_targets else None)
    if sites and result.site_values is None:
        head: Any = predictor.model.head
        click.echo(
            f"No per-site contributions: the model pools with {head.pooling!r}; "
            "only 'site' and 'sum' pooling give them.",
            err=True,
        )
    if sites and result.site_values is not None:
        with open(sites, "w") as handle:
            handle.write("id,site," + ",".join(predictor.target_names) + "\n")
            for sid, values in zip(result.ids, result.site_values, strict=True):
                for k, row in enumerate(values):
                    handle.write(f"{sid},{k}," + ",".join(f"{v:.8g}" for v in row) + "\n")
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Skipped {len(skipped)} invalid structure(s): see {output.with_suffix('.skipped.txt')}")
    write_status(
        output.parent,
        "completed",
        f"predicted {len(result.ids)} structures",
        skipped=[asdict(s) for s in skipped],
    )
    click.echo(f"Predicted {len(result.ids)} structures -> {output}")


def _read_inputs(data: tuple[Path, ...], skip_invalid: bool):
    from ..training.dataset import CrystalDataset, load_dataset

    if len(data) == 1 and (data[0].is_dir() or data[0].suffix == ".npz"):
        return load_dataset(data[0], skip_invalid=skip_invalid, require_targets=False)
    return CrystalDataset.from_structures(
        [str(p) for p in data], ids=_file_ids(data), require_targets=False, skip_invalid=skip_invalid
    )


def _predict_pretrained(name, data, output: Path, skip_invalid, batch_size, workers, device) -> None:
    import warnings

    from ..ensemble import Ensemble, OutOfDomainWarning

    ensemble = Ensemble.pretrained(name, device=device)
    dataset_, skipped = _read_inputs(data, skip_invalid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfDomainWarning)
        result = ensemble.predict(dataset_, skip_invalid=skip_invalid, batch_size=batch_size, workers=workers)
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    skipped = skipped + result.skipped
    output.parent.mkdir(parents=True, exist_ok=True)
    result.write_csv(output)
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Skipped {len(skipped)} invalid structure(s): see {output.with_suffix('.skipped.txt')}")
    flagged = sum(bool(r) for r in result.out_of_domain)
    write_status(
        output.parent,
        "completed",
        f"predicted {len(result.ids)} structures with {result.model}",
        skipped=[asdict(s) for s in skipped],
        out_of_domain=flagged,
    )
    click.echo(f"Predicted {len(result.ids)} structures with {result.model} -> {output}")


# --- demo ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), default=Path("demo-run"), show_default=True
)
@click.option("--structures", "n_structures", type=int, default=300, show_default=True)
@click.option("--epochs", type=int, default=40, show_default=True)
@guarded("output_dir")
def demo(output_dir: Path, n_structures: int, epochs: int) -> None:
    """Generate fcc/bcc alloys with EMT energies, train a CGCNN on them, predict with it."""
    from ..demo import run_demo

    run_demo(output_dir, n_structures=n_structures, epochs=epochs, echo=click.echo)


def _add_provenance() -> None:
    from .provenance import model_group

    cli.add_command(model_group, name="provenance")


_add_provenance()


def _add_descriptor_commands() -> None:
    from . import descriptors

    for name in descriptors.__all__:
        cli.add_command(getattr(descriptors, name))


_add_descriptor_commands()


def _add_phonon_commands() -> None:
    from .phonons import phonons

    cli.add_command(phonons)


_add_phonon_commands()


def _add_pretrained_commands() -> None:
    from .pretrained import pretrained

    cli.add_command(pretrained)


_add_pretrained_commands()


def _add_search_command() -> None:
    from .search import search

    cli.add_command(search)


_add_search_command()


def main() -> None:
    from ..memory import keep_freed_memory

    keep_freed_memory()  # for this process only, which ends with the command
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.exceptions.ClickException as error:
        error.show()
        sys.exit(EXIT_CODES["usage"])
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(EXIT_CODES["error"])
