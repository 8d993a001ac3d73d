"""``cgcnn.phonon_comparison``: trained models of U and Cv against phonopy references.

For each crystal a :class:`~.phonon_reference.PhononReferenceWorkChain` runs (all submitted at once,
so they run in parallel under a daemon); the models then predict U and Cv for phonopy's primitive
cells (the cells the references are per mole of), and a calcfunction scores them: MAE, MAE/MAD,
the largest error, each crystal's error, and a parity plot. A crystal whose reference fails, or
that is dynamically unstable, or that a model cannot take, is reported and left out; the others go
on.
"""

from __future__ import annotations

import re
from typing import Any

from aiida import orm
from aiida.common.exceptions import MultipleObjectsError, NotExistent
from aiida.engine import ExitCode, WorkChain
from aiida.engine.processes.workchains.workchain import WorkChainSpec
from aiida_phonopy.data import PhonopyData, PreProcessData

from ..calculations.functions.phonons import compare_phonon_predictions, predict_phonon_properties
from ..data.ensemble import EnsembleData
from ..data.model import ModelData
from ..phonons.compare import find_phonon_target
from ..phonons.errors import PhononInputError
from ..phonons.settings import PhononSettings
from ..phonons.setup import build_phonopy
from .phonon_reference import PhononReferenceWorkChain

__all__ = ["PhononComparisonWorkChain", "structures_from_group"]


def structures_from_group(group: orm.Group | str | int) -> dict[str, orm.StructureData]:
    """The ``StructureData`` of a group (the group, its label or pk) by link label, for a namespace
    input such as ``structures``: each node's label made a valid link label (``mp-149`` ->
    ``mp_149``) where every label is set and unique, else ``pk<pk>``. Other nodes are ignored."""
    group = _load_group(group)
    structures = (n for n in group.nodes if isinstance(n, orm.StructureData))
    nodes = sorted(structures, key=lambda n: n.pk or 0)  # a group holds stored nodes: each has a pk
    if not nodes:
        raise ValueError(f"group {group.label!r} holds no StructureData")
    labels = [_link_label(n.label) for n in nodes]
    if not all(labels) or len(set(labels)) != len(labels):
        labels = [f"pk{n.pk}" for n in nodes]
    return dict(zip(labels, nodes, strict=True))


def _load_group(group: orm.Group | str | int) -> orm.Group:
    if isinstance(group, orm.Group):
        return group
    try:
        return orm.load_group(group)
    except (NotExistent, MultipleObjectsError) as error:
        raise ValueError(f"no single group {group!r}: {error}; `verdi group list` shows them") from error


def _link_label(text: str) -> str:
    label = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text or "")).strip("_")
    return f"s_{label}" if label[:1].isdigit() else label


def _node_name(node: orm.Node) -> str:
    return f"{type(node).__name__}<{node.pk}>" + (f" {node.label!r}" if node.label else "")


def _validate_models(inputs: dict[str, Any]) -> str | None:
    has_model, has_u, has_cv = ("model" in inputs), ("model_u" in inputs), ("model_cv" in inputs)
    if has_model == (has_u or has_cv) or (has_u != has_cv):
        return "give either `model` (one model of U and Cv) or both `model_u` and `model_cv`"
    temperature = inputs["model_temperature"].value
    try:
        for prop, key in (("U", "model_u"), ("Cv", "model_cv")):
            node = inputs.get(key) or inputs["model"]
            name = f"{key if key in inputs else 'model'} ({_node_name(node)})"
            target = find_phonon_target(prop, node.targets, node.units, name, temperature)
            if isinstance(node, EnsembleData) and node.basis[target.index] == "intensive":
                return (
                    f"{name}: target {target.name!r} is intensive (per atom or per formula of any size); "
                    "U and Cv are compared per mole of primitive cells: use an ensemble whose target "
                    "is per primitive cell or per formula unit"
                )
            if target.temperature_k is not None and abs(target.temperature_k - temperature) > 1e-6:
                return (
                    f"{name}: target {target.name!r} is at {target.temperature_k:g} K but model_temperature "
                    f"is {temperature:g} K"
                )
    except PhononInputError as error:
        return str(error)
    reference = inputs.get("reference", {})
    temperatures = reference["temperatures"].get_list() if "temperatures" in reference else [300.0]
    if not any(abs(t - temperature) < 1e-6 for t in temperatures):
        return f"model_temperature {temperature:g} K is not among the reference temperatures {temperatures}"
    return None


def _primitive_mismatch(label: str, structure: orm.StructureData, data: PreProcessData) -> str | None:
    """Why ``structure`` is not the primitive cell of ``data``, or None."""
    primitive = data.get_primitive_cell()
    ours, theirs = structure.get_pymatgen_structure(), primitive.get_pymatgen_structure()
    what = (
        f"structure {label!r} ({ours.composition.formula}, {len(ours)} atoms) is not the primitive cell of "
        f"phonopy_data {label!r} ({theirs.composition.formula}, {len(theirs)} atoms)"
    )
    why = "; U and Cv are per mole of that primitive cell, so the model must see that cell"
    if len(ours) != len(theirs) or ours.composition != theirs.composition:
        return what + why
    if abs(ours.volume - theirs.volume) > 1e-3 * theirs.volume:
        return what + f": volume {ours.volume:.3f} Å^3 against {theirs.volume:.3f} Å^3" + why
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if not StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False).fit(ours, theirs):
        return what + ": the atoms are arranged differently" + why
    return None


def validate_inputs(inputs: dict[str, Any], _: Any) -> str | None:
    """Crystals, models and a reference source that fit together; messages name the crystal or model."""
    phonopy_data = dict(inputs.get("phonopy_data", {}))
    structures = dict(inputs.get("structures", {}))
    if not structures and not phonopy_data:
        return (
            "no crystals: give `structures` (for a group: PhononComparisonWorkChain."
            "get_builder_from_group) or `phonopy_data`"
        )
    if structures and phonopy_data and set(structures) != set(phonopy_data):
        return (
            f"`structures` and `phonopy_data` must have the same labels; only in structures: "
            f"{sorted(set(structures) - set(phonopy_data))}, only in phonopy_data: "
            f"{sorted(set(phonopy_data) - set(structures))}"
        )
    message = _validate_models(inputs)
    if message:
        return message
    reference = inputs.get("reference", {})
    has_source = "engine" in reference or "force_workchain" in reference
    if not has_source:
        if not phonopy_data:
            return (
                "no reference: give `reference.engine` (a force engine), `reference.force_workchain`, or "
                "`phonopy_data` with forces"
            )
        for label, data in sorted(phonopy_data.items()):
            if not isinstance(data, PhonopyData) or data.forces is None:
                return (
                    f"phonopy_data {label!r} ({_node_name(data)}) has missing forces, and no "
                    "`reference.engine` or `reference.force_workchain` is given to compute them"
                )
    for label, data in sorted(phonopy_data.items()):
        if label in structures:
            mismatch = _primitive_mismatch(label, structures[label], data)
            if mismatch:
                return mismatch
    if structures and not phonopy_data:
        try:
            settings = PhononSettings.from_dict(
                reference["phonopy"].get_dict() if "phonopy" in reference else {}
            )
            for label, structure in sorted(structures.items()):
                build_phonopy(structure.get_ase(), settings, name=f"structure {label!r}")
        except PhononInputError as error:
            return str(error)
    return None


class PhononComparisonWorkChain(WorkChain):
    """Compare U and Cv predicted by trained models with phonopy references, crystal by crystal."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input_namespace(
            "structures",
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help="Crystals by label (unit cells; their phonopy primitive cells are predicted); for "
            "a group, get_builder_from_group fills it.",
        )
        spec.input_namespace(
            "phonopy_data",
            valid_type=(PreProcessData, PhonopyData),
            dynamic=True,
            required=False,
            help="phonopy set-ups by label (aiida-phonopy), e.g. DFT force sets (PhonopyData with "
            "forces) read by import_phonopy_calculation; with `structures`, the same labels, "
            "and each structure must be the set-up's primitive cell.",
        )
        spec.input(
            "model",
            valid_type=(ModelData, EnsembleData),
            required=False,
            help="One model with targets U and Cv, or a pretrained ensemble of them (e.g. "
            "import_pretrained('phonons-300K')): its mean is compared, its spread recorded.",
        )
        spec.input(
            "model_u",
            valid_type=(ModelData, EnsembleData),
            required=False,
            help="Model of U in kJ/mol per mole of primitive cells.",
        )
        spec.input(
            "model_cv",
            valid_type=(ModelData, EnsembleData),
            required=False,
            help="Model of Cv in J/(K·mol) per mole of primitive cells.",
        )
        spec.input(
            "model_temperature",
            valid_type=orm.Float,
            default=lambda: orm.Float(300.0),
            help="Temperature (K) the models predict at [300]; must be among reference.temperatures.",
        )
        spec.expose_inputs(
            PhononReferenceWorkChain,
            namespace="reference",
            exclude=("structure", "preprocess_data"),
            namespace_options={
                "help": "How each reference is computed: phonopy settings, "
                "temperatures and the force source (engine or force work chain)."
            },
        )
        spec.inputs.validator = validate_inputs

        # aiida types the steps as Callable[[WorkChain], ...], which a subclass's methods are not
        spec.outline(
            cls.setup,  # type: ignore[arg-type]
            cls.run_references,  # type: ignore[arg-type]
            cls.inspect_references,  # type: ignore[arg-type]
            cls.predict,  # type: ignore[arg-type]
            cls.compare,  # type: ignore[arg-type]
        )

        spec.output_namespace(
            "references",
            valid_type=orm.Dict,
            dynamic=True,
            help="Per crystal: U, Cv, S, F over temperatures, lowest frequency, stability.",
        )
        spec.output_namespace(
            "primitive_structures",
            valid_type=orm.StructureData,
            dynamic=True,
            help="Per crystal: phonopy's primitive cell, the cell the models were given.",
        )
        spec.output_namespace(
            "phonopy_data",
            valid_type=PhonopyData,
            dynamic=True,
            help="Per crystal: the phonopy data (forces, NAC) of the reference.",
        )
        spec.output_namespace(
            "predictions",
            valid_type=orm.Dict,
            dynamic=True,
            help="Per crystal: predicted U_kJmol and Cv_JKmol at model_temperature.",
        )
        spec.output(
            "comparison",
            valid_type=orm.Dict,
            help="MAE, MAD, MAE/MAD, RMSE, largest error per property; per-crystal errors; excluded "
            "crystals with the reason.",
        )
        spec.output(
            "parity_plot", valid_type=orm.SinglefileData, help="Predicted against reference U and Cv (PNG)."
        )

        spec.exit_code(
            401,
            "ERROR_SOME_REFERENCES_FAILED",
            message="the references of {failed} crystal(s) failed ({labels}); the others were compared",
        )
        spec.exit_code(410, "ERROR_NO_REFERENCE", message="no reference succeeded")
        spec.exit_code(
            411,
            "ERROR_NOTHING_TO_COMPARE",
            message="no crystal left to compare: all unstable, failed or unpredictable",
        )
        spec.exit_code(420, "ERROR_PREDICTION_FAILED", message="the models' predictions failed: {error}")

    @classmethod
    def get_builder_from_group(cls, group: orm.Group | str | int) -> Any:
        """A builder whose ``structures`` are the ``StructureData`` of ``group`` (a Group, its label
        or pk), labelled as :func:`structures_from_group` does; every structure is then an input of
        the work chain, so the provenance graph links each crystal to its comparison."""
        group = _load_group(group)
        builder = cls.get_builder()
        builder.structures = structures_from_group(group)
        builder["metadata"].description = f"phonon comparison of the structures of group {group.label!r}"
        return builder

    def setup(self) -> None:
        structures = dict(self.inputs.get("structures", {}))
        phonopy_data = dict(self.inputs.get("phonopy_data", {}))
        self.ctx.labels = sorted(set(structures) | set(phonopy_data))
        self.ctx.excluded = {}
        self.ctx.references = {}
        self.ctx.primitives = {}
        self.ctx.predictions = {}

    def run_references(self) -> None:
        """One reference work chain per crystal, all submitted before any is awaited."""
        structures = dict(self.inputs.get("structures", {}))
        phonopy_data = dict(self.inputs.get("phonopy_data", {}))
        common = self.exposed_inputs(PhononReferenceWorkChain, namespace="reference")
        for label in self.ctx.labels:
            inputs = dict(common)
            if label in phonopy_data:
                inputs["preprocess_data"] = phonopy_data[label]
            else:
                inputs["structure"] = structures[label]
            inputs["metadata"] = {"call_link_label": f"reference_{label}", "label": label}
            self.to_context(**{f"reference_{label}": self.submit(PhononReferenceWorkChain, **inputs)})

    def inspect_references(self) -> ExitCode | None:
        self.ctx.failed = []
        for label in self.ctx.labels:
            node = self.ctx[f"reference_{label}"]
            if "primitive_structure" in node.outputs:
                self.ctx.primitives[label] = node.outputs.primitive_structure
                self.out(f"primitive_structures.{label}", node.outputs.primitive_structure)
            if not node.is_finished_ok:
                reason = node.exit_message or f"exit status {node.exit_status}"
                if node.is_excepted:
                    reason = f"excepted: {node.exception.strip().splitlines()[-1] if node.exception else ''}"
                self.ctx.excluded[label] = f"reference failed ({node.process_label}<{node.pk}>): {reason}"
                self.ctx.failed.append(label)
                self.report(f"{label}: {self.ctx.excluded[label]}")
                continue
            self.ctx.references[label] = node.outputs.thermal_properties
            self.out(f"references.{label}", node.outputs.thermal_properties)
            self.out(f"phonopy_data.{label}", node.outputs.phonopy_data)
            if not node.outputs.thermal_properties["stable"]:
                self.report(
                    f"{label}: imaginary modes (lowest frequency "
                    f"{node.outputs.thermal_properties['min_freq_THz']:.3f} THz): left out of the comparison"
                )
        if len(self.ctx.failed) == len(self.ctx.labels):
            return self.exit_codes("ERROR_NO_REFERENCE")
        return None

    def _model_inputs(self) -> dict[str, Any]:
        return {key: self.inputs[key] for key in ("model", "model_u", "model_cv") if key in self.inputs}

    def predict(self) -> ExitCode | None:
        """Predictions for phonopy's primitive cells of the crystals with a reference."""
        primitives = {label: self.ctx.primitives[label] for label in self.ctx.references}
        try:
            result = predict_phonon_properties(
                temperature=self.inputs.model_temperature, **self._model_inputs(), **primitives
            )
        except Exception as error:
            return self.exit_codes("ERROR_PREDICTION_FAILED").format(error=f"{type(error).__name__}: {error}")
        for label, reason in result["skipped"].get_dict().items():
            self.ctx.excluded[label] = reason
        self.ctx.predictions = dict(result.get("predictions", {}))
        for label, node in self.ctx.predictions.items():
            self.out(f"predictions.{label}", node)
        return None

    def _source(self) -> str:
        reference = self.inputs.reference
        if "engine" in reference:
            where = f" on {reference.engine_code.full_label}" if "engine_code" in reference else ""
            return f"engine {reference.engine['calculator']}{where}"
        if "force_workchain" in reference:
            return f"force work chain {reference.force_workchain.value}"
        return "phonopy data (forces given)"

    def compare(self) -> ExitCode | None:
        context = orm.Dict(
            {
                "excluded": self.ctx.excluded,
                "reference_source": self._source(),
                "models": {key: node.uuid for key, node in self._model_inputs().items()},
            }
        )
        result = compare_phonon_predictions(
            temperature=self.inputs.model_temperature,
            context=context,
            references=self.ctx.references,
            predictions=self.ctx.predictions,
        )
        self.out("comparison", result["comparison"])
        self.out("parity_plot", result["parity_plot"])
        if result["comparison"]["n_compared"] == 0:
            return self.exit_codes("ERROR_NOTHING_TO_COMPARE")
        if self.ctx.failed:
            return self.exit_codes("ERROR_SOME_REFERENCES_FAILED").format(
                failed=str(len(self.ctx.failed)), labels=", ".join(self.ctx.failed[:10])
            )
        return None
