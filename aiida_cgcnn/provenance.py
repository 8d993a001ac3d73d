"""Provenance queries: every prediction made for a structure or by a model, every model with its data
and metrics.

The rule by which a prediction is found, whoever made it:

* an in-process prediction (``predict_structures``, the ASE calculator's ``record=True``, the phonon
  comparison's ``predict_phonon_properties``) is a :class:`~aiida_cgcnn.data.prediction.PredictionData`
  created by a calculation that has the structure and the model among its inputs; the record names
  both by UUID;
* a batch prediction is the ``predictions`` array of a finished ``cgcnn.predict`` CalcJob, one row
  per dataset id; a dataset built from stored structures (``dataset_from_structures``) has their
  UUIDs as ids and the structures among the inputs of its creator, or, for the large shards of
  ``cgcnn.screen``, names them (``CrystalDatasetData.name_structures``) instead of linking them.

No process or function name is looked at, so a new caller that records a ``PredictionData`` is found too.
"""

from __future__ import annotations

import typing as t
from dataclasses import asdict, dataclass, field
from typing import Any

from aiida import orm

from .calculations.predict import PredictCalculation
from .data.dataset import CrystalDatasetData
from .data.ensemble import EnsembleData
from .data.model import ModelData
from .data.prediction import PredictionData

__all__ = ["PredictionRecord", "find_model_predictions", "find_predictions", "list_datasets", "list_models"]

#: How many calculations away a derived cell may be (relaxation, then the phonopy set-up).
DERIVED_DEPTH = 2


@dataclass
class PredictionRecord:
    """One prediction for one structure, with where it came from.

    ``structure_uuid`` is the structure predicted (for a ``cgcnn.predict`` of a dataset not built from
    stored structures: the dataset id); ``model`` names the model: ``ModelData<pk>`` or, for a
    pretrained ensemble, its label (``pretrained NAME vN, trained on SOURCE (FUNCTIONAL)``).
    Ensembles also give ``std`` (the calibrated spread per target) and ``out_of_domain`` (empty, or
    why the structure lies outside the training data); both are empty/None for a single model.
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
    """UUID of the training dataset node of a ModelData (trained in this profile, or a stored dataset
    with its checkpoint's dataset sha256), else None; an ensemble's training data is described by its
    creator's ``training_data`` input instead."""
    if isinstance(model, EnsembleData):
        return None
    dataset = model.get_training_dataset()
    return None if dataset is None else dataset.uuid


def _model_name(model: ModelData | EnsembleData) -> str:
    return model.model_label if isinstance(model, EnsembleData) else f"ModelData<{model.pk}>"


class _Models:
    """Model nodes and their training datasets by UUID, each looked up once per query."""

    def __init__(self) -> None:
        self._nodes: dict[str, Any] = {}
        self._datasets: dict[str, str | None] = {}

    def get(self, uuid: str) -> ModelData | EnsembleData:
        if uuid not in self._nodes:
            self._nodes[uuid] = orm.load_node(uuid)
        return t.cast("ModelData | EnsembleData", self._nodes[uuid])

    def dataset(self, model: ModelData | EnsembleData) -> str | None:
        if model.uuid not in self._datasets:
            self._datasets[model.uuid] = _training_dataset(model)
        return self._datasets[model.uuid]


def _from_record(record: PredictionData, process: orm.ProcessNode, models: _Models) -> PredictionRecord:
    model = models.get(record["model"])
    return PredictionRecord(
        structure_uuid=record["structure"],
        values=dict(record["values"]),
        units=dict(record["units"]),
        model_uuid=model.uuid,
        model_pk=t.cast(int, model.pk),
        training_dataset_uuid=models.dataset(model),
        process_uuid=process.uuid,
        process_type=process.process_type or "",
        date=process.ctime.isoformat(),
        model=_model_name(model),
        std=dict(record["std"]),
        out_of_domain=record["out_of_domain"],
    )


def _from_batch(
    calculation: orm.CalcJobNode,
    model: ModelData | EnsembleData,
    predictions: orm.ArrayData,
    structure_ids: set[str] | None,
    models: _Models,
) -> list[PredictionRecord]:
    """The rows of a ``cgcnn.predict`` output for ``structure_ids`` (every row when None)."""
    attributes = predictions.base.attributes
    ids = [str(i) for i in predictions.get_array("ids")]
    rows = [k for k, i in enumerate(ids) if structure_ids is None or i in structure_ids]
    if not rows:
        return []
    values = predictions.get_array("values")
    targets = attributes.get("target_names")
    names = targets
    if attributes.get("task") == "classification":
        names = attributes.get("classes") or [str(i) for i in range(values.shape[1])]
    units = dict(zip(targets, attributes.get("units"), strict=True))
    flagged: dict[str, str] = {}
    spread = None
    if isinstance(model, EnsembleData):
        spread = predictions.get_array("std")
        flagged = calculation.outputs.out_of_domain.get_dict()
    records = []
    for k in rows:
        std = {} if spread is None else dict(zip(names, map(float, spread[k]), strict=True))
        records.append(
            PredictionRecord(
                structure_uuid=ids[k],
                values=dict(zip(names, map(float, values[k]), strict=True)),
                units=units,
                model_uuid=model.uuid,
                model_pk=t.cast(int, model.pk),
                training_dataset_uuid=models.dataset(model),
                process_uuid=calculation.uuid,
                process_type=calculation.process_type or "",
                date=calculation.ctime.isoformat(),
                model=_model_name(model),
                std=std,
                out_of_domain=flagged.get(ids[k], "") if spread is not None else None,
            )
        )
    return records


def _derived_cells(structure: orm.StructureData, depth: int) -> list[orm.StructureData]:
    """``structure`` and the cells calculations made from it (relaxed, primitive), ``depth`` steps deep."""
    found = {structure.pk: structure}
    frontier = [structure.pk]
    for _ in range(depth):
        if not frontier:
            break
        query = orm.QueryBuilder()
        query.append(orm.StructureData, filters={"id": {"in": frontier}}, tag="structure")
        query.append(orm.CalculationNode, with_incoming="structure", tag="calculation")
        query.append(orm.StructureData, with_incoming="calculation", project="*")
        frontier = []
        for (node,) in query.all():
            if node.pk not in found:
                found[node.pk] = node
                frontier.append(node.pk)
    return list(found.values())


def _batch_predictions(query: orm.QueryBuilder) -> orm.QueryBuilder:
    """``query`` (ending in a ``dataset`` tag) continued to the finished ``cgcnn.predict`` jobs of those
    datasets, projecting each job, its model and its ``predictions`` array."""
    query.append(
        PredictCalculation,
        with_incoming="dataset",
        tag="predict",
        filters={"attributes.exit_status": 0},
        project="*",
    )
    query.append((ModelData, EnsembleData), with_outgoing="predict", project="*")
    query.append(orm.ArrayData, with_incoming="predict", edge_filters={"label": "predictions"}, project="*")
    return query


def find_predictions(structure: orm.StructureData, derived: bool = True) -> list[PredictionRecord]:
    """Every prediction recorded for ``structure``, oldest first (see the module documentation for the
    rule). With ``derived``, also those of the cells calculations made from it, such as the phonopy
    primitive cell the phonon comparison predicts for (their ``structure_uuid`` says which cell)."""
    cells = _derived_cells(structure, DERIVED_DEPTH) if derived else [structure]
    uuids = [cell.uuid for cell in cells]
    models = _Models()
    records: list[PredictionRecord] = []

    query = orm.QueryBuilder()
    query.append(orm.StructureData, filters={"uuid": {"in": uuids}}, tag="structure")
    query.append(orm.CalculationNode, with_incoming="structure", tag="process", project="*")
    query.append(
        PredictionData, with_incoming="process", filters={"attributes.structure": {"in": uuids}}, project="*"
    )
    seen = set()
    for process, record in query.all():
        if record.pk not in seen:  # a process with several structures matches once per structure
            seen.add(record.pk)
            records.append(_from_record(record, process, models))

    linked = orm.QueryBuilder()
    linked.append(orm.StructureData, filters={"uuid": {"in": uuids}}, tag="structure")
    linked.append(orm.CalculationNode, with_incoming="structure", tag="build")
    linked.append(CrystalDatasetData, with_incoming="build", tag="dataset")
    # datasets that name their structures instead of linking them (cgcnn.screen, link_structures False)
    named = orm.QueryBuilder()
    named.append(CrystalDatasetData, filters=CrystalDatasetData.naming(uuids), tag="dataset")
    done = set()
    for query in (linked, named):
        for calculation, model, predictions in _batch_predictions(query).all():
            if calculation.pk not in done:
                done.add(calculation.pk)
                records += _from_batch(calculation, model, predictions, set(uuids), models)
    return sorted(records, key=lambda r: r.date)


def find_model_predictions(model: ModelData | EnsembleData) -> list[PredictionRecord]:
    """Every prediction made with ``model``, oldest first: its records and every row of its finished
    ``cgcnn.predict`` calculations."""
    if not isinstance(model, (ModelData, EnsembleData)):
        raise TypeError(f"{type(model).__name__}<{model.pk}> is not a ModelData or EnsembleData")
    models = _Models()
    records: list[PredictionRecord] = []
    query = orm.QueryBuilder()
    query.append(type(model), filters={"id": model.pk}, tag="model")
    query.append(orm.CalculationNode, with_incoming="model", tag="process", project="*")
    query.append(
        PredictionData, with_incoming="process", filters={"attributes.model": model.uuid}, project="*"
    )
    for process, record in query.all():
        records.append(_from_record(record, process, models))
    query = orm.QueryBuilder()
    query.append(type(model), filters={"id": model.pk}, tag="model")
    query.append(
        PredictCalculation,
        with_incoming="model",
        tag="predict",
        filters={"attributes.exit_status": 0},
        project="*",
    )
    query.append(orm.ArrayData, with_incoming="predict", edge_filters={"label": "predictions"}, project="*")
    for calculation, predictions in query.all():
        records += _from_batch(calculation, model, predictions, None, models)
    return sorted(records, key=lambda r: r.date)


def list_models() -> list[dict[str, Any]]:
    """Every stored model, oldest first, then every pretrained ensemble: ``kind`` (``CGCNN``,
    ``de-CGCNN`` with descriptors, ...), targets and units, ``test_mae`` (target -> [MAE, unit]),
    ``epochs``, ``label``, ``date`` and the training dataset (``dataset_pk`` when it is in the profile,
    else the checkpoint's ``dataset_sha256``)."""
    rows = []
    query = orm.QueryBuilder().append(ModelData, project="*").order_by({ModelData: {"ctime": "asc"}})
    for (model,) in query.all():
        dataset = model.get_training_dataset()
        rows.append(
            {
                "pk": model.pk,
                "uuid": model.uuid,
                "type": "ModelData",
                "kind": model.kind,
                "architecture": model.base.attributes.get("architecture"),
                "pooling": model.base.attributes.get("pooling"),
                "descriptors": model.descriptors,
                "targets": model.targets,
                "units": model.units,
                "test": model.metrics.get("test", {}),
                "test_mae": {k: list(v) for k, v in model.mae_per_target().items()},
                "epochs": model.base.attributes.get("epochs"),
                "dataset_pk": None if dataset is None else dataset.pk,
                "dataset_size": None if dataset is None else dataset.size,
                "dataset_sha256": model.dataset_sha256,
                "date": model.ctime.isoformat(),
                "label": model.label,
            }
        )
    query = orm.QueryBuilder().append(EnsembleData, project="*").order_by({EnsembleData: {"ctime": "asc"}})
    for (ensemble,) in query.all():
        metrics = ensemble.metrics
        architecture = ensemble.base.attributes.get("architecture") or "cgcnn"
        rows.append(
            {
                "pk": ensemble.pk,
                "uuid": ensemble.uuid,
                "type": "EnsembleData",
                "kind": f"{architecture.upper()} ensemble of {ensemble.base.attributes.get('members')}",
                "architecture": architecture,
                "pooling": ensemble.base.attributes.get("pooling"),
                "descriptors": [],
                "targets": ensemble.targets,
                "units": ensemble.units,
                "test": {name: metrics.get(name, {}) for name in ensemble.targets},
                "test_mae": {k: list(v) for k, v in ensemble.mae_per_target().items()},
                "epochs": None,
                "dataset_pk": None,
                "dataset_size": None,
                "dataset_sha256": ensemble.base.attributes.get("dataset_sha256"),
                "date": ensemble.ctime.isoformat(),
                "label": ensemble.model_label,
            }
        )
    return rows


def list_datasets() -> list[dict[str, Any]]:
    """Every stored dataset, oldest first: size, targets and units, elements, descriptor features,
    ``sha256`` (of the file), ``dataset_sha256`` (of the content), label, date and how many stored
    models were trained on it (by a calculation in this profile, or elsewhere on the same content
    and target names)."""
    rows = []
    query = (
        orm.QueryBuilder()
        .append(CrystalDatasetData, project="*")
        .order_by({CrystalDatasetData: {"ctime": "asc"}})
    )
    for (dataset,) in query.all():
        trained = orm.QueryBuilder()
        trained.append(CrystalDatasetData, filters={"id": dataset.pk}, tag="dataset")
        trained.append(orm.CalcJobNode, with_incoming="dataset", tag="train")
        trained.append(ModelData, with_incoming="train", project="uuid")
        models = set(trained.all(flat=True))
        if dataset.dataset_sha256:  # models trained elsewhere on the same content (their checkpoints say)
            same = orm.QueryBuilder().append(
                ModelData,
                filters={"attributes.dataset_sha256": dataset.dataset_sha256},
                project=["uuid", "attributes.targets"],
            )
            models.update(uuid for uuid, targets in same.all() if targets == dataset.target_names)
        rows.append(
            {
                "pk": dataset.pk,
                "uuid": dataset.uuid,
                "label": dataset.label,
                "size": dataset.size,
                "targets": dataset.target_names,
                "units": dataset.units,
                "task": dataset.base.attributes.get("task"),
                "elements": dataset.base.attributes.get("elements", []),
                "features": len(dataset.base.attributes.get("feature_names") or []),
                "sha256": dataset.sha256,
                "dataset_sha256": dataset.dataset_sha256,
                "models": len(models),
                "date": dataset.ctime.isoformat(),
            }
        )
    return rows
