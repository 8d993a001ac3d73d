"""Provenance queries: every prediction made for a structure, every model with its data and metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from aiida import orm

from .data.dataset import CrystalDatasetData
from .data.ensemble import EnsembleData
from .data.model import ModelData

__all__ = ["PredictionRecord", "find_predictions", "list_models"]


@dataclass
class PredictionRecord:
    """One prediction for one structure, with where it came from.

    ``model`` names the model: ``ModelData<pk>`` or, for a pretrained ensemble, its label
    (``pretrained NAME vN, trained on SOURCE (FUNCTIONAL)``). Ensembles also give ``std`` (the
    calibrated spread per target) and ``out_of_domain`` (empty, or why the structure lies outside
    the training data); both are empty/None for a single model.
    """

    structure_uuid: str
    values: dict[str, float]
    units: dict[str, str]
    model_uuid: str
    model_pk: int
    training_dataset_uuid: str | None
    process_uuid: str
    process_type: str
    date: str
    model: str = ""
    std: dict[str, float] = field(default_factory=dict)
    out_of_domain: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _training_dataset(model: ModelData | EnsembleData) -> str | None:
    """UUID of the training dataset node (ModelData trained in this profile), else None; an
    ensemble's training data is described by its creator's ``training_data`` input instead."""
    if isinstance(model, EnsembleData):
        return None
    dataset = model.get_training_dataset()
    return None if dataset is None else dataset.uuid


def _model_name(model: ModelData | EnsembleData) -> str:
    return model.model_label if isinstance(model, EnsembleData) else f"ModelData<{model.pk}>"


def find_predictions(structure: orm.StructureData) -> list[PredictionRecord]:
    """Every prediction recorded for ``structure``: from the ``predict_structures`` calcfunction and from
    ``cgcnn.predict`` CalcJobs on datasets built from it; oldest first."""
    records: list[PredictionRecord] = []

    # quick predictions: structure -> calcfunction (same link label in and out) -> Dict
    query = orm.QueryBuilder()
    query.append(orm.StructureData, filters={"id": structure.pk}, tag="structure")
    query.append(
        orm.CalcFunctionNode,
        with_incoming="structure",
        tag="call",
        filters={"attributes.function_name": "predict_structures"},
        edge_project="label",
        project=["uuid", "process_type", "ctime"],
    )
    query.append((ModelData, EnsembleData), with_outgoing="call", project="*", tag="model")
    for row in query.dict():
        call = row["call"]
        label = row["structure--call"]["label"]
        uuid, process_type, ctime = call["uuid"], call["process_type"], call["ctime"]
        model = row["model"]["*"]
        output = orm.load_node(uuid).base.links.get_outgoing(link_label_filter=label).one().node
        data = output.get_dict()
        std: dict[str, float] = {}
        out_of_domain = None
        if isinstance(model, EnsembleData):
            names = list(data["units"])
            std = {k: data[f"{k}_std"] for k in names}
            out_of_domain = data.get("out_of_domain", "")
        else:
            names = [k for k in data if k not in ("units", "site_contributions", "predicted_class")]
        records.append(
            PredictionRecord(
                structure.uuid,
                {k: data[k] for k in names},
                data.get("units", {}),
                model.uuid,
                model.pk,
                _training_dataset(model),
                uuid,
                process_type,
                ctime.isoformat(),
                _model_name(model),
                std,
                out_of_domain,
            )
        )

    # batch predictions: structure -> create_dataset -> dataset -> cgcnn.predict -> ArrayData
    from .calculations.predict import PredictCalculation

    query = orm.QueryBuilder()
    query.append(orm.StructureData, filters={"id": structure.pk}, tag="structure")
    query.append(
        orm.CalcFunctionNode,
        with_incoming="structure",
        tag="build",
        filters={"attributes.function_name": "create_dataset"},
    )
    query.append(CrystalDatasetData, with_incoming="build", tag="dataset")
    query.append(
        PredictCalculation,
        with_incoming="dataset",
        tag="predict",
        project=["uuid", "process_type", "ctime"],
        filters={"attributes.exit_status": 0},
    )
    query.append((ModelData, EnsembleData), with_outgoing="predict", project="*")
    query.append(orm.ArrayData, with_incoming="predict", edge_filters={"label": "predictions"}, project="*")
    for uuid, process_type, ctime, model, predictions in query.all():
        ids = predictions.get_array("ids")
        rows = np.nonzero(ids == structure.uuid)[0]
        if not len(rows):
            continue  # skipped as invalid in that batch
        values = predictions.get_array("values")[rows[0]]
        names = predictions.base.attributes.get("target_names")
        if predictions.base.attributes.get("task") == "classification":
            names = predictions.base.attributes.get("classes") or [str(i) for i in range(len(values))]
        units = dict(
            zip(
                predictions.base.attributes.get("target_names"),
                predictions.base.attributes.get("units"),
                strict=True,
            )
        )
        std: dict[str, float] = {}
        out_of_domain = None
        if isinstance(model, EnsembleData):
            std = dict(zip(names, map(float, predictions.get_array("std")[rows[0]]), strict=True))
            flagged = orm.load_node(uuid).outputs.out_of_domain.get_dict()
            out_of_domain = flagged.get(structure.uuid, "")
        records.append(
            PredictionRecord(
                structure.uuid,
                dict(zip(names, map(float, values), strict=True)),
                units,
                model.uuid,
                model.pk,
                _training_dataset(model),
                uuid,
                process_type,
                ctime.isoformat(),
                _model_name(model),
                std,
                out_of_domain,
            )
        )
    return sorted(records, key=lambda r: r.date)


def list_models() -> list[dict[str, Any]]:
    """Every stored model with its targets, units, test metrics, training dataset and date; then every
    pretrained ensemble (``label`` set, ``test`` per target)."""
    rows = []
    query = orm.QueryBuilder().append(ModelData, project="*").order_by({ModelData: {"ctime": "asc"}})
    for (model,) in query.all():
        dataset = model.get_training_dataset()
        rows.append(
            {
                "pk": model.pk,
                "uuid": model.uuid,
                "architecture": model.base.attributes.get("architecture"),
                "pooling": model.base.attributes.get("pooling"),
                "targets": model.targets,
                "units": model.units,
                "test": model.metrics.get("test", {}),
                "dataset_pk": None if dataset is None else dataset.pk,
                "dataset_size": None if dataset is None else dataset.size,
                "date": model.ctime.isoformat(),
                "label": "",
            }
        )
    query = orm.QueryBuilder().append(EnsembleData, project="*").order_by({EnsembleData: {"ctime": "asc"}})
    for (ensemble,) in query.all():
        metrics = ensemble.metrics
        rows.append(
            {
                "pk": ensemble.pk,
                "uuid": ensemble.uuid,
                "architecture": ensemble.base.attributes.get("architecture"),
                "pooling": ensemble.base.attributes.get("pooling"),
                "targets": ensemble.targets,
                "units": ensemble.units,
                "test": {name: metrics.get(name, {}) for name in ensemble.targets},
                "dataset_pk": None,
                "dataset_size": None,
                "date": ensemble.ctime.isoformat(),
                "label": ensemble.model_label,
            }
        )
    return rows
