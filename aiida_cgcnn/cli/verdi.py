"""``verdi data cgcnn.model`` and ``verdi data cgcnn.dataset``, built from aiida-core's CLI parts.

The profile comes from verdi (``verdi -p PROFILE data cgcnn.model ...``) or, for ``aiida-cgcnn
provenance``, from the same ``-p/--profile`` option of aiida-core; nodes are command arguments of
aiida-core's ``DataParamType``/``NodeParamType`` (pk, UUID or label; an unknown one is a usage error,
exit 2); output goes through ``aiida.cmdline.utils.echo`` with tables from ``tabulate``.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.params import options, types
from aiida.cmdline.params.arguments.overridable import OverridableArgument
from aiida.cmdline.utils import decorators, echo

if t.TYPE_CHECKING:
    from aiida import orm

    from ..data.dataset import CrystalDatasetData
    from ..data.ensemble import EnsembleData
    from ..data.model import ModelData
    from ..provenance import PredictionRecord

__all__ = ["dataset_group", "model_group", "provenance_group"]

MODELS = ("aiida.data:cgcnn.model", "aiida.data:cgcnn.ensemble")

MODEL = OverridableArgument("model", type=types.DataParamType(sub_classes=MODELS))
DATASET = OverridableArgument("dataset", type=types.DataParamType(sub_classes=("aiida.data:cgcnn.dataset",)))
STRUCTURE_OR_MODEL = OverridableArgument(
    "node", type=types.DataParamType(sub_classes=("aiida.data:core.structure", *MODELS))
)
JSON = options.OverridableOption("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _date(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _targets(names: list[str], units: list[str]) -> str:
    return ", ".join(f"{n} [{u}]" if u else n for n, u in zip(names, units, strict=True))


def _mae(test_mae: dict[str, list[t.Any]]) -> str:
    """One line per target: never one number across targets of different units."""
    if not test_mae:
        return "-"
    return "\n".join(f"{name} {value:.4g} {unit}".rstrip() for name, (value, unit) in test_mae.items())


def _training_data(row: dict[str, t.Any]) -> str:
    if row["dataset_pk"] is not None:
        return f"CrystalDatasetData<{row['dataset_pk']}> ({row['dataset_size']} structures)"
    if row["dataset_sha256"]:
        return f"sha256 {row['dataset_sha256'][:12]} (not in this profile)"
    return "-"


def _table(rows: list[list[t.Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, disable_numparse=True)


def _fields(pairs: list[tuple[str, t.Any]]) -> str:
    from tabulate import tabulate

    return tabulate([[k, v] for k, v in pairs], tablefmt="plain", disable_numparse=True)


# --- verdi data cgcnn.model -------------------------------------------------------------------------


@click.group("cgcnn.model", cls=VerdiCommandGroup)
def model_group() -> None:
    """Trained models (ModelData, pretrained EnsembleData) and their predictions."""


@model_group.command("list")
@JSON()
@decorators.with_dbenv()
def model_list(as_json: bool) -> None:
    """Every stored model: kind (de-CGCNN for a descriptor hybrid), targets, test MAE per target with
    its unit, epochs, training data, date and label; then the pretrained ensembles."""
    from ..provenance import list_models

    rows = list_models()
    if as_json:
        echo.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        echo.echo_report("no models stored in this profile")
        return
    table = []
    for row in rows:
        ensemble = row["type"] == "EnsembleData"
        label = row["label"]
        if not ensemble and label.startswith(row["kind"]):
            label = ""  # the default label repeats the other columns
        table.append(
            [
                row["pk"],
                f"{row['kind']} ({row['pooling']})",
                _targets(row["targets"], row["units"]).replace(", ", "\n"),
                _mae(row["test_mae"]),
                row["epochs"] if row["epochs"] is not None else "-",
                "see label" if ensemble else _training_data(row),
                _date(row["date"]),
                label,
            ]
        )
    echo.echo(
        _table(table, ["PK", "model", "targets", "test MAE", "epochs", "training data", "created", "label"])
    )


def _show_model(node: ModelData | EnsembleData) -> list[tuple[str, t.Any]]:
    from ..data.ensemble import EnsembleData
    from ..provenance import find_model_predictions, list_models

    row = next(r for r in list_models() if r["uuid"] == node.uuid)
    attributes = node.base.attributes
    pairs: list[tuple[str, t.Any]] = [
        ("PK", node.pk),
        ("UUID", node.uuid),
        ("type", type(node).__name__),
        ("label", node.label),
        ("description", node.description),
        ("kind", row["kind"]),
        ("pooling", row["pooling"]),
        ("targets", _targets(row["targets"], row["units"])),
        ("test MAE", _mae(row["test_mae"]).replace("\n", "; ")),
    ]
    if isinstance(node, EnsembleData):
        pairs += [("members", attributes.get("members")), ("training data", node.model_label)]
    else:
        descriptors = node.descriptors
        pairs += [
            ("descriptors", f"{len(descriptors)}: {', '.join(descriptors)}" if descriptors else "-"),
            ("epochs", row["epochs"] if row["epochs"] is not None else "-"),
            ("training data", _training_data(row)),
        ]
    pairs += [
        ("sha256", attributes.get("sha256")),
        ("package version", attributes.get("package_version") or "-"),
        ("created", _date(row["date"])),
        ("predictions", len(find_model_predictions(node))),
    ]
    return pairs


@model_group.command("show")
@MODEL()
@JSON()
@decorators.with_dbenv()
def model_show(model: ModelData | EnsembleData, as_json: bool) -> None:
    """What MODEL is: kind, targets, test MAE per target, epochs, training data, sha256, predictions."""
    pairs = _show_model(model)
    if as_json:
        echo.echo(json.dumps(dict(pairs), indent=2, default=str))
    else:
        echo.echo(_fields(pairs))


def _prediction_rows(records: list[PredictionRecord], by_structure: bool) -> list[list[t.Any]]:
    rows = []
    for r in records:
        values = "\n".join(
            f"{k} = {v:.6g}{f' ± {r.std[k]:.2g}' if k in r.std else ''} {r.units.get(k, '')}".rstrip()
            for k, v in r.values.items()
        )
        flag = f"OUT OF DOMAIN: {r.out_of_domain}" if r.out_of_domain else ""
        if by_structure:
            trained = f"trained on {r.training_dataset_uuid[:8]}" if r.training_dataset_uuid else ""
            who = f"{r.model_pk} ({r.model})" if r.out_of_domain is not None else f"{r.model_pk} {trained}"
        else:
            who = r.structure_uuid
        rows.append(
            [
                _date(r.date),
                values,
                who.strip(),
                f"{r.process_type.split('.')[-1].split(':')[-1]} {r.process_uuid[:8]}",
                flag,
            ]
        )
    return rows


@model_group.command("predictions")
@STRUCTURE_OR_MODEL()
@JSON()
@decorators.with_dbenv()
def model_predictions(node: orm.Data, as_json: bool) -> None:
    """Every prediction for NODE: a StructureData (whichever model made it), or a ModelData or
    EnsembleData (every prediction made with it)."""
    from aiida import orm

    from ..provenance import find_model_predictions, find_predictions

    by_structure = isinstance(node, orm.StructureData)
    records = (
        find_predictions(t.cast("orm.StructureData", node))
        if by_structure
        else find_model_predictions(t.cast("ModelData", node))
    )
    if as_json:
        echo.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        echo.echo_report(f"no predictions recorded for {type(node).__name__}<{node.pk}>")
        return
    headers = ["date", "prediction", "model" if by_structure else "structure", "by", "domain"]
    rows = _prediction_rows(records, by_structure)
    if not any(row[-1] for row in rows):  # single models: no domain check to show
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    echo.echo(_table(rows, headers))


@model_group.command("export")
@MODEL()
@click.argument("path", type=click.Path(path_type=Path))
@decorators.with_dbenv()
def model_export(model: ModelData | EnsembleData, path: Path) -> None:
    """Write the checkpoint of MODEL to PATH, for the command line or ASE; for a pretrained ensemble
    (EnsembleData) PATH is a folder for `aiida-cgcnn predict --model PATH`."""
    from ..data.ensemble import EnsembleData

    model.export(path)
    if isinstance(model, EnsembleData):
        echo.echo_success(f"wrote {path}/ ({model.model_label}, {len(model.member_files)} members)")
    else:
        echo.echo_success(f"wrote {path} (sha256 {model.sha256[:12]})")


# --- verdi data cgcnn.dataset -----------------------------------------------------------------------


@click.group("cgcnn.dataset", cls=VerdiCommandGroup)
def dataset_group() -> None:
    """Datasets (CrystalDatasetData): the portable dataset files as nodes."""


@dataset_group.command("list")
@JSON()
@decorators.with_dbenv()
def dataset_list(as_json: bool) -> None:
    """Every stored dataset: size, targets, elements, descriptor features, models trained on it."""
    from ..provenance import list_datasets

    rows = list_datasets()
    if as_json:
        echo.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        echo.echo_report("no datasets stored in this profile")
        return
    table = [
        [
            row["pk"],
            row["size"],
            _targets(row["targets"], row["units"]),
            " ".join(row["elements"][:10]) + (" ..." if len(row["elements"]) > 10 else ""),
            row["features"] or "-",
            row["models"],
            row["sha256"][:12],
            _date(row["date"]),
            row["label"],
        ]
        for row in rows
    ]
    headers = ["PK", "size", "targets", "elements", "features", "models", "sha256", "created", "label"]
    echo.echo(_table(table, headers))


@dataset_group.command("show")
@DATASET()
@decorators.with_dbenv()
def dataset_show(dataset: CrystalDatasetData) -> None:
    """What DATASET holds: size, targets, task, elements, features, skipped structures, sources."""
    from ..provenance import list_datasets

    row = next(r for r in list_datasets() if r["uuid"] == dataset.uuid)
    attributes = dataset.base.attributes
    features = attributes.get("feature_names") or []
    skipped = attributes.get("skipped", None) or {}  # none on a node made from a CrystalDataset
    pairs = [
        ("PK", dataset.pk),
        ("UUID", dataset.uuid),
        ("label", dataset.label),
        ("description", dataset.description),
        ("size", dataset.size),
        ("targets", _targets(dataset.target_names, dataset.units)),
        ("task", attributes.get("task")),
        ("elements", " ".join(attributes.get("elements", []))),
        ("descriptor features", f"{len(features)}: {', '.join(features)}" if features else "-"),
        ("skipped", f"{len(skipped)}: {', '.join(list(skipped)[:5])}" if skipped else "-"),
        ("source structures", len(dataset.get_source_structures()) or "- (not built from StructureData)"),
        ("models trained", row["models"]),
        ("sha256", dataset.sha256),
        ("content sha256", dataset.dataset_sha256 or "-"),
        ("created", _date(row["date"])),
    ]
    echo.echo(_fields(pairs))


@dataset_group.command("export")
@DATASET()
@click.argument("path", type=click.Path(path_type=Path))
@decorators.with_dbenv()
def dataset_export(dataset: CrystalDatasetData, path: Path) -> None:
    """Write DATASET to PATH (a .npz file for `aiida-cgcnn train` or `predict`)."""
    dataset.export(path)
    echo.echo_success(f"wrote {path} ({dataset.size} structures, sha256 {dataset.sha256[:12]})")


# --- aiida-cgcnn provenance -------------------------------------------------------------------------


@click.group("provenance", cls=VerdiCommandGroup)
@options.PROFILE(type=types.ProfileParamType(load_profile=True), expose_value=False)
def provenance_group() -> None:
    """Models, datasets and predictions in an AiiDA profile (the same as `verdi data cgcnn.model`)."""


for _command in (model_list, model_show, model_predictions, model_export):
    provenance_group.add_command(_command)
