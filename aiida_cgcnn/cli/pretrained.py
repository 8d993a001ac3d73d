"""``aiida-cgcnn pretrained``: the shipped models (list, show, build)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import guarded

__all__ = ["pretrained"]


@click.group()
def pretrained() -> None:
    """Pretrained ensembles shipped with the package (loaded offline by name)."""


def _size(entry: dict) -> str:
    total = sum(f["bytes"] for f in entry["files"])
    return f"{total / 1e6:.1f} MB"


def registry_rows() -> list[list[str]]:
    """One row per shipped model: name, targets, units, data, test MAE, MAE/MAD, members, size."""
    from ..pretrained.registry import available, card

    rows = []
    for name in available():
        entry = card(name)
        targets = entry["metrics"]["targets"]
        names = [t["name"] for t in entry["targets"]]
        units = [
            t["unit"] + (f" per {t['basis']}" if t["basis"] != "intensive" else "") for t in entry["targets"]
        ]
        rows.append(
            [
                f"{name} v{entry['version']}",
                ", ".join(names),
                ", ".join(dict.fromkeys(units)),
                f"{entry['source']['path'].split('/')[0]} ({entry['source']['functional']}), "
                f"{entry['split_counts']['member_train']} train",
                ", ".join(f"{targets[n]['mae']:.4g}" for n in names),
                ", ".join(f"{targets[n]['mae_over_mad']:.3f}" for n in names),
                str(entry["members"]),
                _size(entry),
            ]
        )
    return rows


@pretrained.command("list")
def list_models() -> None:
    """Print the registry: name, targets, units, data, test MAE, MAE/MAD, members, size."""
    from tabulate import tabulate

    header = ["model", "targets", "units", "data", "test MAE", "MAE/MAD", "members", "size"]
    rows = registry_rows()
    if not rows:
        click.echo("No pretrained model is installed.")
        return
    click.echo(tabulate(rows, headers=header, tablefmt="simple"))


@pretrained.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Print the card of NAME: data, split, recipe, metrics, calibration, domain."""
    from ..pretrained.registry import card, model_label

    entry = card(name)
    click.echo(f"{model_label(entry)}\n{entry['title']}")
    click.echo(f"data: {entry['data']['description']}; licence {entry['data']['licence']}")
    click.echo(f"  sha256 {entry['data']['sha256']}, {entry['data']['structures']} structures")
    click.echo(f"split: {json.dumps(entry['split_counts'])}")
    click.echo(f"recipe: model {json.dumps(entry['model'])}, training {json.dumps(entry['train'])}")
    for t in entry["targets"]:
        m = entry["metrics"]["targets"][t["name"]]
        line = f"{t['name']} [{t['unit']}, {t['basis']}]: test MAE {m['mae']:.4g}"
        line += f", MAE/MAD {m['mae_over_mad']:.4f}"
        if "per_atom" in m:
            line += f"; per atom MAE {m['per_atom']['mae']:.4g}, MAE/MAD {m['per_atom']['mae_over_mad']:.4f}"
        cal = m["calibration"]
        line += f"; 1σ/2σ coverage {cal['coverage_1sigma']:.2f}/{cal['coverage_2sigma']:.2f}"
        click.echo(line)
    domain = entry["domain"]
    click.echo(
        f"domain: {len(domain['elements'])} elements, {domain['num_atoms'][0]}-{domain['num_atoms'][1]} atoms"
    )
    click.echo(f"limits: {entry['limits']}")


@pretrained.command("build")
@click.argument("name")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The real-data folder [../shared/data or $AIIDA_CGCNN_DATA].",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Model folder [pretrained/NAME].")
@click.option(
    "--work",
    "work_dir",
    type=click.Path(path_type=Path),
    help="Members' training runs (resumed if present) [OUTPUT/runs].",
)
@click.option("--members", help="Train only these members (comma-separated seeds), e.g. one per process.")
@click.option("--epochs", type=int, help="Override the recipe's epochs (a quick, smaller rebuild).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-finalize", is_flag=True, help="Train members only; no card.")
@click.option("--install", is_flag=True, help="Copy the built model into this installation's registry.")
@guarded("output")
def build_command(name, data_dir, output, work_dir, members, epochs, device, no_finalize, install) -> None:
    """Rebuild the pretrained model NAME from the real data with its recorded recipe."""
    from ..pretrained.build import build
    from ..pretrained.build import install as install_model
    from ..training.public_data import shared_data_dir

    data_dir = data_dir or shared_data_dir()
    if data_dir is None:
        raise click.UsageError("no real-data folder: pass --data or set $AIIDA_CGCNN_DATA")
    output = output or Path("pretrained") / name
    work_dir = work_dir or output / "runs"
    chosen = [int(m) for m in members.split(",")] if members else None
    card = build(name, data_dir, output, work_dir, chosen, epochs, device, not no_finalize, echo=click.echo)
    if card is not None and install:
        click.echo(f"installed -> {install_model(output, name)}")


@pretrained.command("card")
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("docs/pretrained"),
    show_default=True,
    help="Folder of the Markdown pages (plots under OUTPUT/images).",
)
def card_command(names, output) -> None:
    """Write the model card (Markdown page and plots) of NAMES (every shipped model by default)."""
    from ..pretrained.cards import write_cards

    for path in write_cards(output, list(names) or None):
        click.echo(f"card -> {path}")
