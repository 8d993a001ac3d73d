"""Quick in-process predictions for ``StructureData``, recorded in the provenance graph."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ...data.model import ModelData

__all__ = ["predict_structures"]


@calcfunction
def predict_structures(model: ModelData, **structures: orm.StructureData) -> dict[str, orm.Dict]:
    """Predict with ``model`` for each structure; one ``Dict`` output per structure, same link label.

    Each output holds the values by target name, with ``units`` and, for site-pooled models,
    ``site_contributions``. Invalid structures raise, naming the structure.
    """
    predictor = model.get_predictor()
    labels = sorted(structures)
    result = predictor.predict(
        [structures[label].get_ase() for label in labels], ids=[structures[label].uuid for label in labels]
    )
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
