"""``aiida-cgcnn search``: a hyperparameter search in local processes (no AiiDA needed)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import guarded, load_config

__all__ = ["search"]


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), default=Path("search"), show_default=True
)
@click.option("--trials", type=int, default=20, show_default=True, help="Trials in all.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Trainings run at once.")
@click.option(
    "--space",
    default="cgcnn",
    show_default=True,
    help="A named search space (cgcnn, hybrid, architecture: see docs/search.md) or a YAML file.",
)
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option(
    "--pruner",
    type=click.Choice(["asha", "median", "none"]),
    default="asha",
    show_default=True,
    help="asha: successive halving, promoted trials continue from their checkpoints.",
)
@click.option("--min-epochs", type=int, default=5, show_default=True, help="Epochs of the first rung.")
@click.option("--max-epochs", type=int, default=45, show_default=True, help="Epochs of a complete trial.")
@click.option("--reduction-factor", type=int, default=3, show_default=True, help="η of successive halving.")
@click.option("--metric", default="mae", show_default=True, help="Validation metric the search optimises.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler, split and training seed.")
@click.option(
    "--split",
    type=(float, float, float),
    default=(0.6, 0.2, 0.2),
    show_default=True,
    help="Train/val/test ratios of DATA; the test part is held out and evaluated once, for the best trial.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    help="Settings every trial shares (model, train, graph sections of a train --config file).",
)
@click.option("--workers", type=int, default=1, show_default=True, help="Graph builders per trial.")
@guarded("output_dir")
def search(
    data: Path,
    output_dir: Path,
    trials: int,
    jobs: int,
    space: str,
    sampler: str,
    pruner: str,
    min_epochs: int,
    max_epochs: int,
    reduction_factor: int,
    metric: str,
    seed: int,
    split: tuple[float, float, float],
    config_path: Path | None,
    workers: int,
) -> None:
    """Search hyperparameters for DATA with Optuna: JOBS trainings at a time, each an `aiida-cgcnn
    train` process. Run again with the same settings to go on with a stopped search."""
    from ..training.local_search import LocalSearch
    from ..training.search import Rungs, SearchStudy

    study = SearchStudy(space, Rungs(min_epochs, max_epochs, reduction_factor), metric, sampler, pruner, seed)
    base = load_config(config_path)
    summary = LocalSearch(data, output_dir, study, trials, jobs, base, split, workers, echo=click.echo).run()
    click.echo(json.dumps({k: summary[k] for k in ("trials", "states", "cpu_hours_children")}))
