"""``PredictionData``: one structure's prediction by one model, in the one shape every recorder writes.

The calcfunction ``predict_structures`` (and through it the ASE calculator's ``record=True``) and the
phonon comparison's ``predict_phonon_properties`` record each prediction as a ``PredictionData``
created by a calculation that has the structure and the model among its inputs. Its keys:

``structure``
    UUID of the ``StructureData`` predicted.
``model``, ``model_label``
    UUID of the ``ModelData`` or ``EnsembleData``, and what it is in words.
``values``, ``units``
    Target name -> value, target name -> unit (for a classifier: class -> probability, unit ``""``).
``std``
    Target name -> calibrated spread (ensembles; empty for a single model).
``out_of_domain``
    Ensembles: empty, or why the structure lies outside the training data; ``None`` for a single model.

and, where they apply, ``per_atom``, ``per_atom_std``, ``per_formula_unit``, ``basis`` (target ->
what a value is per), ``cell_atoms`` and ``basis_atoms`` (ensembles), ``site_contributions`` (target
-> one value per site, site-pooled models), ``predicted_class`` (classifiers) and ``temperature_K``
(phonon properties). Targets are keys of the nested dictionaries only, so no target name can
collide with a key of the record.
"""

from __future__ import annotations

import typing as t

from aiida import orm

__all__ = ["PredictionData"]

_REQUIRED = ("structure", "model", "model_label", "values", "units", "std", "out_of_domain")


class PredictionData(orm.Dict):
    """A prediction record (see the module documentation for its keys); make it with :meth:`create`."""

    @classmethod
    def create(
        cls,
        structure: orm.StructureData,
        model: orm.Data,
        model_label: str,
        values: dict[str, float],
        units: dict[str, str],
        std: dict[str, float] | None = None,
        out_of_domain: str | None = None,
        **details: t.Any,
    ) -> PredictionData:
        """The record of ``model``'s prediction for ``structure`` (both stored), labelled for
        ``verdi node show``."""
        unknown = set(details) & set(_REQUIRED)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are keys of the record itself, not details")
        node = cls(
            {
                "structure": structure.uuid,
                "model": model.uuid,
                "model_label": model_label,
                "values": {str(k): v for k, v in values.items()},
                "units": {str(k): u for k, u in units.items()},
                "std": dict(std or {}),
                "out_of_domain": out_of_domain,
                **details,
            }
        )
        formula = structure.get_formula()
        node.label = f"{formula} by {model_label}"[:255]
        node.description = "; ".join(
            f"{name} = {value:.6g}"
            + (f" ± {node['std'][name]:.2g}" if name in node["std"] else "")
            + (f" {units[name]}" if units.get(name) else "")
            for name, value in values.items()
            if isinstance(value, (int, float))
        )
        return node

    def _validate(self) -> bool:
        super()._validate()
        missing = [key for key in _REQUIRED if key not in self.keys()]
        if missing:
            raise ValueError(f"a PredictionData needs the keys {missing}: make it with PredictionData.create")
        return True

    @property
    def structure_uuid(self) -> str:
        return t.cast(str, self["structure"])

    @property
    def model_uuid(self) -> str:
        return t.cast(str, self["model"])
