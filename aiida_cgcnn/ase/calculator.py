"""``CGCNNCalculator``: models' predictions as ASE properties.

One calculator holds one or more models (checkpoint paths, ``ModelData`` nodes or
:class:`~aiida_cgcnn.predict.Predictor` objects). Every target becomes a property under a stable
name; several models of the same target form an ensemble whose mean is the property and whose
standard deviation is ``<name>_std``. Site-pooled models (``sum``/``site``) also give
``<name>_site_contributions`` (one value per atom; ``site_contributions`` when there is one such target).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from ..predict import Predictor

if typing.TYPE_CHECKING:
    from ..ensemble import Ensemble

__all__ = ["CGCNNCalculator", "property_name"]

#: Stable property names for the targets of the package's datasets and the papers' properties.
ALIASES = {
    "u": "phonon_internal_energy",
    "cv": "heat_capacity",
    "s": "phonon_entropy",
    "f": "phonon_free_energy",
    "formation_energy_per_atom": "formation_energy_per_atom",
    "e_form": "formation_energy_per_atom",
    "formation_energy": "formation_energy_per_atom",
    "optb88vdw_bandgap": "band_gap",
    "bandgap": "band_gap",
    "gap": "band_gap",
    "heat_all": "heat_of_formation",
    "log10_bulk_modulus_vrh": "log10_bulk_modulus",
    "log10_shear_modulus_vrh": "log10_shear_modulus",
}


def property_name(target: str) -> str:
    """The ASE property name of a model target: a known alias, else the target in snake case."""
    key = re.sub(r"[^0-9a-zA-Z]+", "_", target).strip("_").lower()
    return ALIASES.get(key, key)


def _predictor(model: Any, device: str) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, os.PathLike)):
        return Predictor.from_checkpoint(model, device=device)
    if hasattr(model, "get_predictor"):  # ModelData; duck-typed so the calculator imports no AiiDA
        return model.get_predictor(device=device)
    raise TypeError(f"a model is a checkpoint path, a ModelData or a Predictor, not {type(model).__name__}")


class CGCNNCalculator(Calculator):
    """ASE calculator for the predictions of one or more trained models.

    Parameters
    ----------
    models
        A checkpoint path, ``ModelData`` node or ``Predictor``, or a list of them.
    model
        Instead of ``models``: a pretrained model by name (``aiida-cgcnn pretrained list``), an
        :class:`~aiida_cgcnn.ensemble.Ensemble` or a stored ``EnsembleData`` (needed for ``record=True``).
        Properties: each target's mean and calibrated
        ``<name>_std``; for extensive targets also ``<name>_per_atom``, ``<name>_per_atom_std`` and
        ``<name>_per_formula_unit``; ``basis_atoms`` (atoms of the cell the values refer to: a
        supercell is reduced to its primitive cell for targets per primitive cell) and
        ``out_of_domain`` (empty, or why the structure lies outside the training data; a warning is
        issued too).
    device
        ``cpu`` (default), ``cuda``, ``cuda:N``; a checkpoint trained on a GPU works on the CPU.
    record
        Store each prediction in the AiiDA provenance graph through the ``predict_structures``
        calcfunction (needs ``ModelData`` models and a loaded profile), so that it shows up in
        :func:`~aiida_cgcnn.provenance.find_predictions`. The same ``Atoms`` predicted again reuse
        their stored ``StructureData`` (found by content hash).
    names
        Property names by target name, overriding :func:`property_name`.
    """

    default_parameters: dict[str, Any] = {}  # noqa: RUF012  (an instance attribute of ase's Calculator)

    def __init__(
        self,
        models: Any = None,
        device: str = "cpu",
        record: bool = False,
        names: dict[str, str] | None = None,
        model: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ensemble: Ensemble | None = None
        if model is not None:
            if models is not None:
                raise ValueError("give either models (checkpoints, nodes) or model (a pretrained name)")
            self._init_ensemble(model, names, record)
            return
        if models is None:
            raise ValueError("give models (checkpoints, ModelData nodes) or model=NAME (a pretrained model)")
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("give at least one model")
        self.models = models
        self.record = record
        #: with ``record=True``: the stored ``StructureData`` of the last prediction, in input order
        self.recorded_structures: list = []
        if record and not all(hasattr(m, "get_predictor") for m in models):
            raise ValueError("record=True needs ModelData nodes (stored models), not files or predictors")
        self.predictors = [_predictor(m, device) for m in models]
        names = dict(names or {})
        self.units: dict[str, str] = {}
        self._members: dict[str, list[tuple[int, int]]] = {}  # property -> [(model, column)]
        self._per_site: set[str] = set()
        for index, predictor in enumerate(self.predictors):
            if predictor.task == "classification":
                for column, label in enumerate(_classes(predictor)):
                    name = names.get(label, f"probability_{property_name(label)}")
                    self._add(name, index, column, "")
                continue
            for column, (target, unit) in enumerate(
                zip(predictor.target_names, predictor.units, strict=True)
            ):
                name = names.get(target, property_name(target))
                self._add(name, index, column, unit)
        # per-site contributions where every member of the property is site-pooled
        self._per_site = {
            name
            for name, members in self._members.items()
            if all(_head(self.predictors[m]).per_site for m, _ in members)
        }
        properties = list(self._members)
        properties += [f"{n}_std" for n, members in self._members.items() if len(members) > 1]
        properties += [f"{n}_site_contributions" for n in sorted(self._per_site)]
        if len(self._per_site) == 1:
            properties.append("site_contributions")
        self.implemented_properties = properties

    def _init_ensemble(self, model: Any, names: dict[str, str] | None, record: bool) -> None:
        from ..ensemble import Ensemble

        node = model if hasattr(model, "get_ensemble") else None  # EnsembleData, duck-typed (no AiiDA here)
        if record and node is None:
            raise ValueError(
                "record=True stores predictions in the provenance graph: pass the stored ensemble, "
                "model=aiida_cgcnn.data.pretrained.import_pretrained(NAME)"
            )
        if node is not None:
            ensemble = node.get_ensemble()
        else:
            ensemble = model if isinstance(model, Ensemble) else Ensemble.pretrained(str(model))
        self.ensemble = ensemble
        self.models, self.record, self.recorded_structures, self.predictors = [model], record, [], []
        self._members, self._per_site = {}, set()
        names = dict(names or {})
        self.units = {}
        self._columns: dict[str, str] = {}  # property -> column of EnsemblePrediction.rows()
        for target, unit, basis in zip(ensemble.target_names, ensemble.units, ensemble.basis, strict=True):
            name = names.get(target, property_name(target))
            extensive = basis != "intensive"
            per_cell = f"{unit} per {basis}" if extensive else unit
            entries = [(name, "pred", per_cell), (f"{name}_std", "std", per_cell)]
            if extensive:
                entries += [
                    (f"{name}_per_atom", "per_atom", f"{unit} per atom"),
                    (f"{name}_per_atom_std", "per_atom_std", f"{unit} per atom"),
                    (f"{name}_per_formula_unit", "per_formula_unit", f"{unit} per formula unit"),
                ]
            for prop, suffix, prop_unit in entries:
                self._columns[prop] = f"{target}_{suffix}"
                self.units[prop] = prop_unit
        for prop in ("basis_atoms", "out_of_domain"):
            self._columns[prop] = prop
        self.implemented_properties = list(self._columns)

    def _add(self, name: str, model: int, column: int, unit: str) -> None:
        if name in self.units and self.units[name] != unit:
            raise ValueError(f"models disagree on the unit of {name!r}: {self.units[name]!r} and {unit!r}")
        self.units[name] = unit
        self._members.setdefault(name, []).append((model, column))

    # --- ASE interface ------------------------------------------------------------------------

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name not in self.implemented_properties:
            raise PropertyNotImplementedError(
                f"{name!r} is not predicted by these models; "
                f"available: {', '.join(self.implemented_properties)}"
            )
        return super().get_property(name, atoms, allow_calculation)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        results = self._predict([self.atoms])
        self.results = {name: values[0] for name, values in results.items()}

    def predict(self, images: Sequence[Any]) -> dict[str, Any]:
        """Predict every property for many structures at once (graphs batched per model).

        Returns arrays of shape (N,) by property name; per-site properties are lists of arrays.
        """
        return self._predict(list(images))

    # --- work ---------------------------------------------------------------------------------

    def _raw(self, images: list) -> list[tuple[np.ndarray, list[np.ndarray] | None]]:
        if self.record:
            return self._recorded(images)
        outputs = []
        for predictor in self.predictors:
            prediction = predictor.predict(images, ids=[_label(a, k) for k, a in enumerate(images)])
            outputs.append((prediction.values, prediction.site_values))
        return outputs

    def _recorded(self, images: list) -> list[tuple[np.ndarray, list[np.ndarray] | None]]:
        from .record import record_model

        outputs = []
        for model, predictor in zip(self.models, self.predictors, strict=True):
            columns = _classes(predictor) if predictor.task == "classification" else predictor.target_names
            site_targets = predictor.target_names if _head(predictor).per_site else []
            self.recorded_structures, values, sites = record_model(model, images, columns, site_targets)
            outputs.append((values, sites))
        return outputs

    def _recorded_ensemble(self, images: list) -> list[dict[str, Any]]:
        """Rows as :meth:`EnsemblePrediction.rows` gives them, from the recorded calcfunction's outputs."""
        from .record import record_ensemble

        self.recorded_structures, rows = record_ensemble(self.models[0], images)
        return rows

    def _predict(self, images: list) -> dict[str, Any]:
        if self.ensemble is not None:
            if self.record:
                rows = self._recorded_ensemble(images)
            else:
                ids = [_label(a, k) for k, a in enumerate(images)]
                rows = self.ensemble.predict(images, ids=ids).rows()
            return {
                prop: np.array(
                    [row[column] for row in rows], dtype=object if prop == "out_of_domain" else None
                )
                for prop, column in self._columns.items()
            }
        raw = self._raw(images)
        results: dict[str, Any] = {}
        for name, members in self._members.items():
            stack = np.stack([raw[m][0][:, c] for m, c in members])  # (members, N)
            results[name] = stack.mean(axis=0)
            if len(members) > 1:
                results[f"{name}_std"] = stack.std(axis=0, ddof=0)
            if name in self._per_site:
                per_model: list[Any] = [raw[m][1] for m, _ in members]
                sites = [
                    np.mean([per_model[j][k][:, c] for j, (_, c) in enumerate(members)], axis=0)
                    for k in range(len(images))
                ]
                results[f"{name}_site_contributions"] = sites
                if len(self._per_site) == 1:
                    results["site_contributions"] = sites
        return results


def _classes(predictor: Predictor) -> list[str]:
    return predictor.classes or [str(c) for c in range(_head(predictor).out.out_features)]


def _head(predictor: Predictor) -> Any:
    """The model's output head (``per_site``, ``out``)."""
    return predictor.model.head


def _label(atoms: Any, index: int) -> str:
    info = getattr(atoms, "info", {}) or {}
    return str(info.get("id", f"{atoms.get_chemical_formula()}#{index}"))
