"""Quick in-process predictions for ``StructureData``, recorded in the provenance graph."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import calcfunction

from ...data.ensemble import EnsembleData
from ...data.model import ModelData
from ...data.prediction import PredictionData

__all__ = ["ensemble_records", "model_label", "predict_structures"]


def model_label(model: ModelData | EnsembleData) -> str:
    """What a prediction record calls its model: an ensemble's label (``pretrained NAME vN, trained on
    ...``), a model's summary (``de-CGCNN (mean) U [kJ/mol]; 40 epochs``)."""
    return model.model_label if isinstance(model, EnsembleData) else model.summary


@calcfunction
def predict_structures(
    model: ModelData | EnsembleData, **structures: orm.StructureData
) -> dict[str, PredictionData]:
    """Predict with ``model`` for each structure; one :class:`PredictionData` output per structure, with
    the structure's link label.

    Each record has ``values`` and ``units`` by target name; a ``ModelData`` adds
    ``site_contributions`` (target -> one value per site) for site-pooled models and
    ``predicted_class`` for classifiers (``values`` are then the class probabilities). An
    ``EnsembleData`` gives the members' mean in ``values``, the calibrated spread in ``std``,
    ``out_of_domain`` (empty, or why the structure lies outside the training data), ``basis``,
    ``cell_atoms``, ``basis_atoms`` and, for extensive targets, ``per_atom``, ``per_atom_std`` and
    ``per_formula_unit``. Invalid structures raise, naming the structure.
    """
    labels = sorted(structures)
    atoms = [structures[label].get_ase() for label in labels]
    ids = [structures[label].uuid for label in labels]
    name = model_label(model)
    if isinstance(model, EnsembleData):
        ensemble = model.get_ensemble().predict(atoms, ids=ids)
        records = ensemble_records(ensemble.rows(), ensemble.target_names, ensemble.units, ensemble.basis)
        return {
            label: PredictionData.create(structures[label], model, name, **record)
            for label, record in zip(labels, records, strict=True)
        }
    predictor = model.get_predictor()
    result = predictor.predict(atoms, ids=ids)
    outputs = {}
    names = predictor.target_names
    units = dict(zip(predictor.target_names, predictor.units, strict=True))
    if predictor.task == "classification":
        names = predictor.classes or [str(c) for c in range(result.values.shape[1])]
        units = dict.fromkeys(names, "")
    for k, label in enumerate(labels):
        details: dict[str, Any] = {}
        if predictor.task == "classification":
            details["predicted_class"] = names[int(result.values[k].argmax())]
        if result.site_values is not None:
            sites = result.site_values[k]
            details["site_contributions"] = {
                target: sites[:, column].tolist() for column, target in enumerate(predictor.target_names)
            }
        values = {target: float(v) for target, v in zip(names, result.values[k], strict=True)}
        outputs[label] = PredictionData.create(structures[label], model, name, values, units, **details)
    return outputs


def ensemble_records(
    rows: list[dict[str, Any]], targets: list[str], units: list[str], basis: list[str]
) -> list[dict[str, Any]]:
    """The keyword arguments of :meth:`PredictionData.create` for each row of an ensemble prediction
    (:meth:`~aiida_cgcnn.ensemble.EnsemblePrediction.rows` or ``read_ensemble_csv``)."""
    records = []
    for row in rows:
        extensive = [name for name, kind in zip(targets, basis, strict=True) if kind != "intensive"]
        records.append(
            {
                "values": {name: float(row[f"{name}_pred"]) for name in targets},
                "units": dict(zip(targets, units, strict=True)),
                "std": {name: float(row[f"{name}_std"]) for name in targets},
                "out_of_domain": str(row["out_of_domain"]),
                "per_atom": {name: float(row[f"{name}_per_atom"]) for name in extensive},
                "per_atom_std": {name: float(row[f"{name}_per_atom_std"]) for name in extensive},
                "per_formula_unit": {name: float(row[f"{name}_per_formula_unit"]) for name in extensive},
                "basis": dict(zip(targets, basis, strict=True)),
                "cell_atoms": int(row["cell_atoms"]),
                "basis_atoms": int(row["basis_atoms"]),
            }
        )
    return records
