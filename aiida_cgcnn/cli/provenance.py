"""Provenance commands (need an AiiDA profile): models, predictions for a structure, model export.

Available as ``verdi data cgcnn.model ...`` and as ``aiida-cgcnn provenance ...``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["model_group"]


def _load_profile(profile: str | None) -> None:
    from aiida import load_profile
    from aiida.manage import get_manager

    if get_manager().get_profile() is None or profile:
        load_profile(profile, allow_switch=True)


@click.group("cgcnn.model")
@click.option("-p", "--profile", default=None, help="AiiDA profile [the default one].")
@click.pass_context
def model_group(ctx: click.Context, profile: str | None) -> None:
    """Trained models and their predictions in the provenance graph."""
    ctx.obj = {"profile": profile}


@model_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every stored model: targets, units, test metrics and training dataset (for a pretrained
    ensemble its label: name, version and training data)."""
    _load_profile(ctx.obj["profile"])
    from ..provenance import list_models

    rows = list_models()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'PK':>6}  {'architecture':12s} {'pooling':10s} {'targets':28s} {'test MAE':>10s}  dataset")
    for row in rows:
        targets = ", ".join(
            f"{t} [{u}]" if u else t for t, u in zip(row["targets"], row["units"], strict=True)
        )
        test = row["test"]
        if row.get("label"):  # an ensemble: the MAE of its first target
            test = next(iter(test.values()), {})
        mae = test.get("mae", test.get("accuracy"))
        mae_text = "-" if mae is None else f"{mae:.4g}"
        dataset = (
            "-" if row["dataset_pk"] is None else f"{row['dataset_pk']} ({row['dataset_size']} structures)"
        )
        if row.get("label"):
            dataset = row["label"]
        click.echo(
            f"{row['pk']:>6}  {row['architecture']:12s} {row['pooling']:10s} {targets:28s} {mae_text:>10s}  "
            f"{dataset}"
        )


@model_group.command("predictions")
@click.argument("structure")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def predictions_command(ctx: click.Context, structure: str, as_json: bool) -> None:
    """Every prediction made for STRUCTURE (pk or uuid of a StructureData)."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm

    from ..provenance import find_predictions

    node = orm.load_node(structure)
    if not isinstance(node, orm.StructureData):
        raise click.BadParameter(f"node {structure} is a {type(node).__name__}, not a StructureData")
    records = find_predictions(node)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no predictions recorded for StructureData<{node.pk}>")
    for r in records:
        values = ", ".join(
            f"{k} = {v:.6g}{f' ± {r.std[k]:.2g}' if k in r.std else ''} {r.units.get(k, '')}".rstrip()
            for k, v in r.values.items()
        )
        if r.out_of_domain is not None:  # a pretrained ensemble: its label says what it was trained on
            flag = f"  OUT OF DOMAIN: {r.out_of_domain}" if r.out_of_domain else ""
            model = f"model {r.model_pk} ({r.model}){flag}"
        else:
            model = f"model {r.model_pk}  trained on {r.training_dataset_uuid or '-'}"
        click.echo(
            f"{r.date[:19]}  {values}  {model}  ({r.process_type.split('.')[-1]} {r.process_uuid[:8]})"
        )


@model_group.command("export")
@click.argument("model")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def export_command(ctx: click.Context, model: str, path: Path) -> None:
    """Write the checkpoint of MODEL (pk or uuid of a ModelData) to PATH, for the command line or ASE;
    for a pretrained ensemble (EnsembleData) PATH is a folder for `aiida-cgcnn predict --model PATH`."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm

    from ..data.ensemble import EnsembleData
    from ..data.model import ModelData

    node = orm.load_node(model)
    if isinstance(node, EnsembleData):
        node.export(path)
        click.echo(f"wrote {path}/ ({node.model_label}, {len(node.member_files)} members)")
        return
    if not isinstance(node, ModelData):
        raise click.BadParameter(f"node {model} is a {type(node).__name__}, not a ModelData or EnsembleData")
    node.export(path)
    click.echo(f"wrote {path} (sha256 {node.sha256[:12]})")
