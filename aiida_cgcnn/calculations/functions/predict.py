"""Quick in-process predictions for ``StructureData``, recorded in the provenance graph."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import calcfunction

from ...data.ensemble import EnsembleData
from ...data.model import ModelData

__all__ = ["ensemble_records", "predict_structures"]


@calcfunction
def predict_structures(
    model: ModelData | EnsembleData, **structures: orm.StructureData
) -> dict[str, orm.Dict]:
    """Predict with ``model`` for each structure; one ``Dict`` output per structure, same link label.

    Each output holds the value of each target under its name and ``units`` (target -> unit).
    A ``ModelData`` adds ``site_contributions`` for site-pooled models (``predicted_class`` for
    classifiers). An ``EnsembleData`` gives the members' mean under the target name and adds
    ``<target>_std`` (calibrated spread), for extensive targets ``<target>_per_atom``,
    ``<target>_per_atom_std`` and ``<target>_per_formula_unit``, and ``basis`` (target -> what the
    value is per), ``cell_atoms``, ``basis_atoms``, ``out_of_domain`` (empty, or why the structure
    lies outside the training data) and ``model`` (the ensemble's label). Invalid structures raise,
    naming the structure.
    """
    labels = sorted(structures)
    atoms = [structures[label].get_ase() for label in labels]
    ids = [structures[label].uuid for label in labels]
    if isinstance(model, EnsembleData):
        result = model.get_ensemble().predict(atoms, ids=ids)
        records = ensemble_records(result.rows(), result.target_names, result.units, result.basis)
        return {
            label: orm.Dict({**record, "model": model.model_label})
            for label, record in zip(labels, records, strict=True)
        }
    predictor = model.get_predictor()
    result = predictor.predict(atoms, ids=ids)
    outputs = {}
    names = predictor.target_names
    if predictor.task == "classification":
        names = predictor.classes or [str(c) for c in range(result.values.shape[1])]
    for k, label in enumerate(labels):
        record = {name: float(v) for name, v in zip(names, result.values[k], strict=True)}
        record["units"] = dict(zip(predictor.target_names, predictor.units, strict=True))
        if predictor.task == "classification":
            record["predicted_class"] = names[int(result.values[k].argmax())]
        if result.site_values is not None:
            record["site_contributions"] = result.site_values[k].tolist()
        outputs[label] = orm.Dict(record)
    return outputs


def ensemble_records(
    rows: list[dict[str, Any]], targets: list[str], units: list[str], basis: list[str]
) -> list[dict[str, Any]]:
    """The per-structure record of an ensemble prediction from rows of its CSV
    (:meth:`~aiida_cgcnn.ensemble.EnsemblePrediction.rows` or ``read_ensemble_csv``)."""
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for name, kind in zip(targets, basis, strict=True):
            record[name] = float(row[f"{name}_pred"])
            record[f"{name}_std"] = float(row[f"{name}_std"])
            if kind != "intensive":
                for suffix in ("per_atom", "per_atom_std", "per_formula_unit"):
                    record[f"{name}_{suffix}"] = float(row[f"{name}_{suffix}"])
        record["units"] = dict(zip(targets, units, strict=True))
        record["basis"] = dict(zip(targets, basis, strict=True))
        record["cell_atoms"] = int(row["cell_atoms"])
        record["basis_atoms"] = int(row["basis_atoms"])
        record["out_of_domain"] = row["out_of_domain"]
        records.append(record)
    return records
