"""Calcfunctions of the phonon work chains, and the import of existing phonopy calculations.

Each step is a calcfunction around the pure :mod:`aiida_cgcnn.phonons`, so every reference value in
the provenance graph links back to the forces, displacements and settings it came from. The phonopy
data types are aiida-phonopy's (``PreProcessData`` for a set-up, ``PhonopyData`` for a set-up with
forces and NAC parameters), so the work chains interoperate with aiida-phonopy's own work chains.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, TypedDict

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from aiida_phonopy.data import PhonopyData, PreProcessData

from ...phonons.compare import PROPERTIES, compare_values, find_phonon_target, parity_plot_png
from ...phonons.errors import PhononInputError
from ...phonons.forces import EngineSpec, compute_forces, relax_structure
from ...phonons.io import PhonopyCalculation, read_phonopy_calculation
from ...phonons.settings import PhononSettings
from ...phonons.setup import build_phonopy
from ...phonons.thermal import phonon_properties, produce_force_constants

__all__ = [
    "compare_phonon_predictions",
    "engine_forces",
    "engine_phonopy_data",
    "import_phonopy_calculation",
    "phonon_thermal_properties",
    "phonopy_data_from_calculation",
    "phonopy_setup",
    "predict_phonon_properties",
    "relax_with_engine",
]


def phonopy_data_from_calculation(calculation: PhonopyCalculation) -> PhonopyData:
    """An (unstored) ``PhonopyData`` holding a calculation's unit cell, matrices, displacements,
    forces and NAC parameters.

    The unit cell goes in as phonopy's own ``PhonopyAtoms`` (not through a ``StructureData``), so
    positions and masses are those phonopy read.
    """
    forces = calculation.forces
    if forces is None:
        raise PhononInputError(f"{calculation.name}: missing forces: the calculation has no forces")
    primitive = calculation.primitive_matrix
    preprocess = PreProcessData(
        phonopy_atoms=calculation.unitcell,
        supercell_matrix=np.asarray(calculation.supercell_matrix).tolist(),
        primitive_matrix=primitive if isinstance(primitive, str) else np.asarray(primitive).tolist(),
        symprec=calculation.symprec,
    )
    preprocess.set_displacements_from_dataset(calculation.displacement_dataset())
    data = PhonopyData(preprocess_data=preprocess)
    data.set_forces(sets_of_forces=forces)
    if calculation.nac_params is not None:
        data.set_born_charges(np.asarray(calculation.nac_params["born"]))
        data.set_dielectric(np.asarray(calculation.nac_params["dielectric"]))
    data.label = calculation.name
    data.description = f"phonopy calculation read from {calculation.source}"
    return data


def import_phonopy_calculation(
    path: str | os.PathLike[str], name: str | None = None, store: bool = True
) -> PhonopyData:
    """Read a phonopy calculation (phonondb archive or folder, phonopy yaml) into a ``PhonopyData``."""
    data = phonopy_data_from_calculation(read_phonopy_calculation(path, name=name))
    return data.store() if store else data


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _name(node: orm.Node) -> str:
    return node.label or f"{type(node).__name__}<{node.pk}>"


class RelaxationOutputs(TypedDict):
    structure: orm.StructureData
    relaxation: orm.Dict


class ComparisonOutputs(TypedDict):
    comparison: orm.Dict
    parity_plot: orm.SinglefileData


@calcfunction
def relax_with_engine(structure: orm.StructureData, engine: orm.Dict) -> RelaxationOutputs:
    """Relax ``structure`` with the engine's calculator and ``engine['relax']`` settings.

    Returns the relaxed ``structure`` and a ``relaxation`` Dict: ``converged``, ``steps``,
    ``max_force_eV_per_angstrom``.
    """
    spec = EngineSpec.from_dict(engine.get_dict())
    relax = dict(spec.relax or {})
    result = relax_structure(
        structure.get_ase(),
        spec.make(),
        fmax=float(relax.get("fmax", 1e-3)),
        steps=int(relax.get("steps", 500)),
        cell=bool(relax.get("cell", True)),
        keep_symmetry=bool(relax.get("keep_symmetry", True)),
    )
    relaxed = orm.StructureData(ase=result.atoms)
    relaxed.label = structure.label
    return {
        "structure": relaxed,
        "relaxation": orm.Dict(
            {
                "converged": result.converged,
                "steps": result.steps,
                "max_force_eV_per_angstrom": result.max_force_ev_per_angstrom,
            }
        ),
    }


@calcfunction
def phonopy_setup(
    structure: orm.StructureData, phonopy: orm.Dict, template: orm.Data | None = None
) -> dict[str, Any]:
    """The set-up of a finite-displacement calculation of the unit cell ``structure``.

    Returns ``preprocess_data`` (aiida-phonopy's ``PreProcessData``: unit cell, supercell and
    primitive matrices, displacements), ``primitive_structure`` (phonopy's primitive cell) and
    ``supercells`` (``supercell_<n>``, aiida-phonopy's labels). The matrices come from the ``phonopy``
    settings, or from ``template`` (a ``PreProcessData``) when given, e.g. for a relaxed cell.

    One calcfunction instead of aiida-phonopy's three: each phonopy set-up searches the supercell's
    symmetry, the slowest part of a small calculation.
    """
    from aiida_phonopy.calculations.functions.link_structures import phonopy_atoms_to_structure

    settings = PhononSettings.from_dict(phonopy.get_dict())
    name = structure.label or f"StructureData<{structure.pk}>"
    if template is not None:
        settings = dataclasses.replace(
            settings,
            supercell_matrix=_to_tuple(template.supercell_matrix),
            primitive_matrix=_to_tuple(template.primitive_matrix),
        )
    phonon = build_phonopy(structure.get_ase(), settings, name=name)  # resolves "auto" once
    preprocess = PreProcessData(
        structure=structure,
        supercell_matrix=np.asarray(phonon.supercell_matrix).tolist(),
        primitive_matrix=np.asarray(phonon.primitive_matrix).tolist(),
        symprec=float(settings.symprec),
    )  # which sets phonopy's default displacements (0.01 Å, plus-minus where needed)
    if settings.displacement_angstrom != 0.01 or settings.is_plusminus != "auto":
        preprocess.set_displacements(
            distance=settings.displacement_angstrom, is_plusminus=settings.is_plusminus
        )
    if preprocess.kinds_map is None:  # the plain case: cells from our own phonopy, no new symmetry search
        phonon.dataset = preprocess.displacement_dataset
        cells = phonon.supercells_with_displacements or []
        digits = len(str(len(cells)))
        supercells = {
            f"supercell_{str(k + 1).zfill(digits)}": phonopy_atoms_to_structure(cell, None, preprocess.pbc)
            for k, cell in enumerate(cells)
        }
        primitive = phonopy_atoms_to_structure(phonon.primitive, None, preprocess.pbc)
    else:  # kinds differing from elements: aiida-phonopy maps them
        supercells = preprocess.get_supercells_with_displacements()
        primitive = preprocess.get_primitive_cell()
    primitive.label = structure.label
    return {"preprocess_data": preprocess, "primitive_structure": primitive, "supercells": supercells}


@calcfunction
def engine_phonopy_data(
    preprocess_data: orm.Data, engine: orm.Dict, **supercells: orm.StructureData
) -> PhonopyData:
    """A ``PhonopyData``: the set-up of ``preprocess_data`` with the engine's forces (eV/Å) on the
    displaced ``supercells`` (``supercell_<n>``, in the order of the displacement dataset).

    No NAC parameters: a force engine gives no Born charges.
    """
    spec = EngineSpec.from_dict(engine.get_dict())
    labels = sorted(supercells, key=lambda label: int(label.rsplit("_", 1)[-1]))
    forces = compute_forces([supercells[label].get_ase() for label in labels], spec.make())
    dataset = preprocess_data.displacement_dataset
    n_displacements = (
        len(dataset["first_atoms"]) if "first_atoms" in dataset else len(dataset["displacements"])
    )
    if forces.shape[0] != n_displacements:
        raise PhononInputError(f"{len(labels)} supercells for {n_displacements} displacements")
    data = PhonopyData(preprocess_data=preprocess_data)
    # PhonopyData keeps all forces in one array named "forces"; setting it directly skips two phonopy
    # set-ups that set_forces makes only to check the shape, which the supercells fix already
    data.set_array("forces", forces)
    data.label = preprocess_data.label
    return data


@calcfunction
def engine_forces(engine: orm.Dict, **supercells: orm.StructureData) -> dict[str, orm.ArrayData]:
    """Forces (eV/Å) on each displaced supercell from the engine's ASE calculator.

    ``supercells`` are labelled ``supercell_<n>`` (aiida-phonopy's labels); the outputs are
    ``forces_<n>`` ``ArrayData`` with the array ``forces``, which is aiida-phonopy's contract for
    ``generate_phonopy_data``.
    """
    spec = EngineSpec.from_dict(engine.get_dict())
    labels = sorted(supercells)
    forces = compute_forces([supercells[label].get_ase() for label in labels], spec.make())
    outputs = {}
    for label, values in zip(labels, forces, strict=True):
        array = orm.ArrayData()
        array.set_array("forces", values)
        outputs[f"forces_{label.rsplit('_', 1)[-1]}"] = array
    return outputs


@calcfunction
def phonon_thermal_properties(
    phonopy_data: PhonopyData, phonopy: orm.Dict, temperatures: orm.List
) -> orm.Dict:
    """U, Cv, S, F (per mole of primitive cells) at ``temperatures`` and the stability of ``phonopy_data``.

    The Dict has phonondb's keys (``U_kJmol``, ``Cv_JKmol``, ``S_JKmol``, ``F_kJmol``,
    ``min_freq_THz``) as lists over ``temperatures_K``, plus ``stable``, ``zero_point_energy_kJmol``,
    ``natoms``, ``formula``, ``mesh``, ``nac`` and the settings used.
    """
    settings = PhononSettings.from_dict(phonopy.get_dict())
    phonon = phonopy_data.get_phonopy_instance()
    if not settings.nac:
        phonon.nac_params = None
    produce_force_constants(phonon, settings=settings, name=_name(phonopy_data))
    properties = phonon_properties(phonon, temperatures.get_list(), settings)
    return orm.Dict({**properties.to_dict(), "phonopy_settings": settings.to_dict()})


def _model_targets(temperature: float, model: Any, model_u: Any, model_cv: Any) -> dict[str, tuple[Any, int]]:
    """Which model and column give U and Cv."""
    chosen = {}
    for prop, node in (("U", model_u or model), ("Cv", model_cv or model)):
        if node is None:
            raise PhononInputError(f"no model for {prop}: give `model`, or `model_u` and `model_cv`")
        target = find_phonon_target(prop, node.targets, node.units, f"model {_name(node)}", temperature)
        chosen[prop] = (node, target.index)
    return chosen


def _predict(node: Any, atoms: list[Any], labels: list[str]) -> Any:
    """A ModelData's predictions, or an EnsembleData's (mean, calibrated std, domain flags)."""
    if hasattr(node, "get_ensemble"):
        return node.get_ensemble().predict(atoms, ids=labels, skip_invalid=True, warn=False)
    return node.get_predictor().predict(atoms, ids=labels, skip_invalid=True)


def _per_cell(result: Any, index: int) -> Any:
    """Factor from an ensemble's basis to the cell given: the work chain gives phonopy's primitive
    cells, so a value per primitive cell is per cell given; one per formula unit is multiplied by
    the formula units in the cell."""
    basis = result.basis[index]
    if basis == "primitive cell":
        return result.cell_atoms / result.basis_atoms
    if basis == "formula unit":
        return result.formula_units * result.cell_atoms / result.basis_atoms
    raise PhononInputError(f"target {result.target_names[index]!r} is intensive; U and Cv must be per cell")


@calcfunction
def predict_phonon_properties(
    temperature: orm.Float,
    model: orm.Data | None = None,
    model_u: orm.Data | None = None,
    model_cv: orm.Data | None = None,
    **structures: orm.StructureData,
) -> dict[str, Any]:
    """Predict U (kJ/mol) and Cv (J/(K·mol)) per mole of cells for each of ``structures``.

    ``model`` gives both (a two-target model), or ``model_u`` and ``model_cv`` one each; each is a
    ``ModelData`` or a pretrained ``EnsembleData``. Outputs ``predictions.<label>`` Dicts
    (``U_kJmol``, ``Cv_JKmol``, ``temperature_K``, the models' UUIDs and targets; for an ensemble
    also ``U_kJmol_std``/``Cv_JKmol_std``, its calibrated spread, and ``out_of_domain`` when the
    crystal lies outside its training data) and ``skipped``: structures a model could not take,
    with the reason. ``records.<label>.<model port>`` are the same predictions as ``PredictionData``
    (one per structure and model), which ``find_predictions`` finds.
    """
    chosen = _model_targets(temperature.value, model, model_u, model_cv)
    labels = sorted(structures)
    atoms = [structures[label].get_ase() for label in labels]
    values: dict[str, dict[str, float]] = {label: {} for label in labels}
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {}
    for prop, (node, index) in chosen.items():
        key = PROPERTIES[prop]["key"]
        if node.uuid not in results:
            results[node.uuid] = _predict(node, atoms, labels)
        result = results[node.uuid]
        for item in result.skipped:
            skipped[str(item.id)] = f"model {_name(node)} cannot take it: {item.reason}"
        if hasattr(result, "mean"):  # an ensemble: the mean per basis cell, scaled to the cell given
            per_cell = _per_cell(result, index)
            for k, label in enumerate(result.ids):
                values[label][key] = float(result.mean[k, index] * per_cell[k])
                values[label][f"{key}_std"] = float(result.std[k, index] * per_cell[k])
                if result.out_of_domain[k]:
                    values[label]["out_of_domain"] = result.out_of_domain[k]
            continue
        for label, row in zip(result.ids, result.values, strict=True):
            values[label][key] = float(row[index])
    outputs: dict[str, orm.Dict] = {}
    for label in labels:
        if label in skipped:
            continue
        outputs[label] = orm.Dict(
            {
                **values[label],
                "temperature_K": temperature.value,
                "models": {prop: node.uuid for prop, (node, _) in chosen.items()},
                "targets": {prop: node.targets[index] for prop, (node, index) in chosen.items()},
                "per": "mole of cells as given (the phonopy primitive cell)",
            }
        )
    return {
        "predictions": outputs,
        "skipped": orm.Dict(skipped),
        "records": _records(structures, outputs, chosen),
    }


def _records(
    structures: dict[str, Any], outputs: dict[str, orm.Dict], chosen: dict[str, Any]
) -> dict[str, Any]:
    """The predictions as ``PredictionData``, one per structure and model input."""
    from ...data.prediction import PredictionData
    from .predict import model_label

    ports = {"U": "model_u", "Cv": "model_cv"}
    by_model: dict[str, list[str]] = {}
    for prop, (node, _) in chosen.items():
        by_model.setdefault(node.uuid, []).append(prop)
    records: dict[str, Any] = {}
    for label, output in outputs.items():
        for props in by_model.values():
            node = chosen[props[0]][0]
            port = "model" if len(props) == 2 else ports[props[0]]
            keys = {prop: PROPERTIES[prop]["key"] for prop in props}
            records.setdefault(label, {})[port] = PredictionData.create(
                structures[label],
                node,
                model_label(node),
                values={prop: output[key] for prop, key in keys.items()},
                units={prop: PROPERTIES[prop]["unit"] for prop in props},
                std={prop: output[f"{key}_std"] for prop, key in keys.items() if f"{key}_std" in output},
                out_of_domain=output.get("out_of_domain", "") if hasattr(node, "get_ensemble") else None,
                temperature_K=output["temperature_K"],
            )
    return records


@calcfunction
def compare_phonon_predictions(
    temperature: orm.Float, context: orm.Dict, **namespaces: dict[str, orm.Dict]
) -> ComparisonOutputs:
    """The comparison of ``predictions`` (namespace) with ``references`` (namespace) at ``temperature``,
    and a parity plot.

    A structure is compared when it has a stable reference and a prediction; the others are listed
    under ``excluded`` with the reason (``context['excluded']`` brings failures of earlier steps).
    Metrics per property (``U``, ``Cv``): MAE, MAD (of the references), MAE/MAD, RMSE, the largest
    error and each structure's error (predicted − reference).
    """
    references = dict(namespaces.get("references", {}))
    predictions = dict(namespaces.get("predictions", {}))
    T = temperature.value
    excluded: dict[str, str] = dict(context.get_dict().get("excluded", {}))
    compared: list[str] = []
    reference_values: dict[str, list[float]] = {prop: [] for prop in PROPERTIES}
    predicted_values: dict[str, list[float]] = {prop: [] for prop in PROPERTIES}
    for label in sorted(references):
        record = references[label].get_dict()
        if not record["stable"]:
            excluded[label] = (
                f"imaginary modes: lowest frequency {record['min_freq_THz']:.3f} THz is below "
                f"{record['stability_threshold_THz']} THz (dynamically unstable)"
            )
            continue
        if label not in predictions:
            excluded.setdefault(label, "no prediction")
            continue
        index = [abs(t - T) < 1e-6 for t in record["temperatures_K"]].index(True)
        compared.append(label)
        for prop, spec in PROPERTIES.items():
            reference_values[prop].append(record[spec["key"]][index])
            predicted_values[prop].append(predictions[label][spec["key"]])
    comparison: dict[str, Any] = {
        "temperature_K": T,
        "n_compared": len(compared),
        "compared": compared,
        "excluded": excluded,
        "per": "mole of primitive cells",
        **{key: value for key, value in context.get_dict().items() if key != "excluded"},
    }
    per_structure: dict[str, dict[str, float]] = {label: {} for label in compared}
    for prop, spec in PROPERTIES.items():
        metrics = compare_values(compared, reference_values[prop], predicted_values[prop])
        for label, row in metrics.pop("per_structure").items():
            per_structure[label].update(
                {
                    f"{prop}_reference": row["reference"],
                    f"{prop}_predicted": row["predicted"],
                    f"{prop}_error": row["error"],
                }
            )
        comparison[prop] = {**metrics, "unit": spec["unit"]}
    comparison["per_structure"] = per_structure
    png = parity_plot_png(
        {
            prop: {
                "reference": reference_values[prop],
                "predicted": predicted_values[prop],
                "labels": compared,
                "mae": comparison[prop]["mae"],
                "mae_over_mad": comparison[prop]["mae_over_mad"],
            }
            for prop in PROPERTIES
        },
        title=f"{context.get_dict().get('reference_source', 'reference')} at {T:g} K",
        excluded=excluded,
    )
    return {
        "comparison": orm.Dict(comparison),
        "parity_plot": orm.SinglefileData(io.BytesIO(png), filename="parity.png"),
    }
