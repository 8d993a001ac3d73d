"""``cgcnn.active_learning``: predictions that steer where phonon references are computed.

Each round an ensemble (``members`` models, one ``cgcnn.train`` restart work chain each, all
submitted at once) predicts the pool structures not computed yet (``cgcnn.predict``), a batch is
selected (:func:`~aiida_cgcnn.selection.select_batch`: ``uncertainty``, ``random`` or ``diverse``),
its references run in parallel (``cgcnn.phonon_reference``, ``cgcnn.table_reference`` or any work
chain with their outputs), the training dataset grows by a calcfunction linked to the previous
dataset and the new references, the members are retrained (or fine-tuned) on it, and the ensemble's
error on a validation set is recorded against the number of reference calculations. The loop stops
at the validation target, when the budget (``rounds`` of ``per_round`` references) is spent, or when
the pool is exhausted. A reference that fails is reported and skipped; its structure is not
selected again.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, WorkChain, if_, while_
from aiida.engine.processes.workchains.workchain import WorkChainSpec
from aiida.plugins import WorkflowFactory

from ..calculations.functions.active_learning import (
    TARGETS,
    VALIDATION_PREFIX,
    curve_row,
    extend_dataset,
    learning_curve,
    pool_dataset,
    prediction_set,
    reference_targets,
    validation_errors,
)
from ..calculations.functions.ensemble import ensemble_from_models
from ..calculations.predict import PredictCalculation
from ..data.dataset import CrystalDatasetData
from ..data.ensemble import EnsembleData
from ..data.model import ModelData
from ..selection import STRATEGIES, composition_features, select_batch
from .phonon_comparison import structures_from_group
from .train import TrainWorkChain

__all__ = ["ActiveLearningWorkChain", "load_reference_workchain"]

#: What a reference work chain must offer: the ports of ``cgcnn.phonon_reference``.
REFERENCE_INPUT = "structure"
REFERENCE_OUTPUTS = ("thermal_properties", "primitive_structure")


def load_reference_workchain(name: str) -> type[WorkChain]:
    """A reference work chain by entry point (``cgcnn.table_reference``) or ``module:Class``; raises
    ValueError unless it takes a ``structure`` and returns ``thermal_properties`` and
    ``primitive_structure`` as ``cgcnn.phonon_reference`` does."""
    found: Any
    try:
        if ":" in name:
            module, _, attribute = name.partition(":")
            found = getattr(importlib.import_module(module), attribute)
        else:
            found = WorkflowFactory(name)
    except Exception as error:
        raise ValueError(f"cannot load the reference work chain {name!r}: {error}") from error
    if not (isinstance(found, type) and issubclass(found, WorkChain)):
        raise ValueError(f"the reference work chain {name!r} is {found!r}, not a WorkChain class")
    spec = found.spec()
    missing = [port for port in REFERENCE_OUTPUTS if port not in spec.outputs]
    if REFERENCE_INPUT not in spec.inputs or missing:
        raise ValueError(
            f"the reference work chain {name!r} must take a `structure` and return `thermal_properties` "
            f"and `primitive_structure` as cgcnn.phonon_reference does (missing: "
            f"{', '.join(missing) or 'the input structure'})"
        )
    return found


def _call(function: Any, link_label: str, /, *args: Any, **inputs: Any) -> Any:
    """Run a calcfunction with a call link label (its metadata input, which the typed signatures of
    aiida's process functions do not declare)."""
    return function(*args, **inputs, metadata={"call_link_label": link_label})


def _positive(name: str, minimum: int = 1) -> Any:
    def validate(value: orm.Int | None, _: Any) -> str | None:
        if value is not None and value.value < minimum:
            return f"{name} is {value.value}: give at least {minimum}"
        return None

    return validate


def _validate_targets(value: orm.List | None, _: Any) -> str | None:
    if value is not None:
        names = value.get_list()
        unknown = [n for n in names if n not in TARGETS]
        if not names or unknown or len(set(names)) != len(names):
            return f"targets {names}: distinct names among {', '.join(TARGETS)}"
    return None


def _validate_strategy(value: orm.Str | None, _: Any) -> str | None:
    if value is not None and value.value not in STRATEGIES:
        return f"strategy {value.value!r}: use one of {', '.join(STRATEGIES)}"
    return None


def _validate_reference(value: orm.Str | None, _: Any) -> str | None:
    if value is not None:
        try:
            load_reference_workchain(value.value)
        except ValueError as error:
            return str(error)
    return None


def _dataset_mismatch(what: str, node: CrystalDatasetData, targets: list[str], exact: bool) -> str | None:
    units = dict(zip(node.target_names, node.units, strict=True))
    for name in targets:
        unit = TARGETS[name][1]
        if name not in units:
            return f"{what} <{node.pk}> has no target {name!r} (it has {node.target_names})"
        if units[name] != unit:
            return f"{what} <{node.pk}>: target {name!r} is in {units[name]!r}, the references give {unit!r}"
    if exact and list(node.target_names) != targets:
        return (
            f"{what} <{node.pk}> has the targets {node.target_names}; the new references add {targets}: "
            "give `targets` in the dataset's order, or a dataset of exactly those targets"
        )
    if exact and node.base.attributes.get("feature_names"):
        return f"{what} <{node.pk}> stores descriptor features, which the new references would lack"
    return None


def validate_inputs(inputs: dict[str, Any], _: Any) -> str | None:
    """A pool, a start, targets that fit the datasets, a budget and a stopping rule that fit together."""
    has_pool, has_group = bool(inputs.get("pool")), "pool_group" in inputs
    if has_pool == has_group:
        return (
            "give exactly one of `pool` (a namespace of StructureData) and `pool_group` (a group label "
            "or UUID)"
        )
    if has_group:
        try:
            structures_from_group(inputs["pool_group"].value)
        except ValueError as error:
            return f"pool_group: {error}"
    targets = inputs["targets"].get_list()
    for key, what, exact in (("dataset", "dataset", True), ("validation", "validation", False)):
        if key in inputs:
            message = _dataset_mismatch(what, inputs[key], targets, exact)
            if message:
                return message
    if "selection_target" in inputs and inputs["selection_target"].value not in targets:
        return f"selection_target {inputs['selection_target'].value!r} is not among the targets {targets}"
    if "stop_target" in inputs and inputs["stop_target"].value not in targets:
        return f"stop_target {inputs['stop_target'].value!r} is not among the targets {targets}"
    goals = [k for k in ("target_mae_over_mad", "target_mae_over_mad_per_atom") if k in inputs]
    if goals and "validation" not in inputs:
        return f"{', '.join(goals)} needs a `validation` dataset to measure the error on"
    if inputs["strategy"].value != "random" and inputs["members"].value < 2:
        return f"the {inputs['strategy'].value} strategy needs a spread: give at least 2 `members`"
    reference = dict(inputs.get("reference_inputs", {}))
    if "structure" in reference:
        return "reference_inputs must not give `structure`: the loop gives each reference its structure"
    if "temperatures" in reference:
        temperatures = [float(x) for x in reference["temperatures"].get_list()]
        temperature = inputs["temperature"].value
        if not any(abs(x - temperature) < 1e-6 for x in temperatures):
            return (
                f"reference_inputs.temperatures {temperatures} lack the target temperature {temperature:g} K"
            )
    return None


class ActiveLearningWorkChain(WorkChain):
    """Active learning of phonon properties: predict, select, compute references, retrain, measure."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input_namespace(
            "pool",
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help="The candidates by label: crystals, best given as their primitive cells (the cells the "
            "references are per mole of).",
        )
        spec.input(
            "pool_group",
            valid_type=orm.Str,
            required=False,
            help="Instead of `pool`: a group (label or UUID) whose StructureData are the candidates.",
        )
        spec.input(
            "dataset",
            valid_type=CrystalDatasetData,
            required=False,
            help="Initial training data with the `targets` (same names, order and units); without it a "
            "random seed batch of `seed_size` pool structures is computed first.",
        )
        spec.input(
            "seed_size",
            valid_type=orm.Int,
            required=False,
            validator=_positive("seed_size"),
            help="References of the random seed batch when no `dataset` is given [per_round].",
        )
        spec.input(
            "reference_workchain",
            valid_type=orm.Str,
            default=lambda: orm.Str("cgcnn.phonon_reference"),
            validator=_validate_reference,
            help="The reference: an entry point (cgcnn.phonon_reference, cgcnn.table_reference) or "
            "'module:Class' of any work chain taking `structure` and returning `thermal_properties` "
            "and `primitive_structure`.",
        )
        spec.input_namespace(
            "reference_inputs",
            dynamic=True,
            required=False,
            populate_defaults=False,
            help="Inputs of every reference besides `structure`, e.g. `engine` and `phonopy` for "
            "cgcnn.phonon_reference, `table` for cgcnn.table_reference; `temperatures` defaults to "
            "[temperature].",
        )
        spec.input(
            "targets",
            valid_type=orm.List,
            default=lambda: orm.List(["U", "Cv"]),
            validator=_validate_targets,
            help=f"Thermal properties that become training targets, among {', '.join(TARGETS)} "
            "(per mole of primitive cells).",
        )
        spec.input(
            "temperature",
            valid_type=orm.Float,
            default=lambda: orm.Float(300.0),
            help="Temperature (K) of the targets [300].",
        )
        spec.input(
            "per_round", valid_type=orm.Int, default=lambda: orm.Int(10), validator=_positive("per_round")
        )
        spec.input(
            "rounds",
            valid_type=orm.Int,
            default=lambda: orm.Int(3),
            validator=_positive("rounds", 0),
            help="Rounds after the initial training; the budget is rounds × per_round references (and "
            "the seed batch).",
        )
        spec.input(
            "strategy",
            valid_type=orm.Str,
            default=lambda: orm.Str("uncertainty"),
            validator=_validate_strategy,
            help="uncertainty (largest ensemble spread), random, or diverse (spread-weighted "
            "farthest-point sampling over composition features, so a batch is not near-copies).",
        )
        spec.input(
            "selection_target",
            valid_type=orm.Str,
            required=False,
            help="The target whose spread selects [the first target].",
        )
        spec.input(
            "selection_per_atom",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help="Compare spreads per atom, so large cells are not chosen for their size alone [True].",
        )
        spec.input("seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the random choices.")
        spec.input("members", valid_type=orm.Int, default=lambda: orm.Int(4), validator=_positive("members"))
        spec.input(
            "fine_tune",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help="Start each later round's member from the same member of the round before (fine-tuning) "
            "instead of from scratch [False].",
        )
        spec.expose_inputs(
            TrainWorkChain,
            namespace="training",
            exclude=("train.dataset", "train.model", "train.parent_folder"),
            namespace_options={
                "help": "The members' training: train.code, train.parameters (each member's train.seed is "
                "set), train.metadata.options; the restart settings."
            },
        )
        spec.expose_inputs(
            PredictCalculation,
            namespace="predict",
            exclude=("model", "dataset"),
            namespace_options={
                "help": "The ensemble's predictions of the pool and validation set: code, options."
            },
        )
        spec.input(
            "validation",
            valid_type=CrystalDatasetData,
            required=False,
            help="Crystals with known references (the targets, per mole of primitive cells) the error "
            "is measured on after every round.",
        )
        spec.input(
            "stop_target",
            valid_type=orm.Str,
            required=False,
            help="The target whose validation error stops the loop [the selection target].",
        )
        spec.input(
            "target_mae_over_mad",
            valid_type=orm.Float,
            required=False,
            help="Stop when the validation MAE/MAD per cell of stop_target is at most this.",
        )
        spec.input(
            "target_mae_over_mad_per_atom",
            valid_type=orm.Float,
            required=False,
            help="Stop when the validation MAE/MAD per atom of stop_target is at most this (with "
            "target_mae_over_mad: both).",
        )
        spec.inputs.validator = validate_inputs

        # aiida types the steps as Callable[[WorkChain], ...], which a subclass's methods are not
        spec.outline(
            cls.setup,  # type: ignore[arg-type]
            if_(cls.needs_seed)(cls.select_seed, cls.run_references, cls.inspect_references),  # type: ignore[arg-type]
            cls.train_members,  # type: ignore[arg-type]
            cls.inspect_members,  # type: ignore[arg-type]
            cls.record,  # type: ignore[arg-type]
            while_(cls.should_continue)(  # type: ignore[arg-type]
                cls.select,  # type: ignore[arg-type]
                cls.run_references,  # type: ignore[arg-type]
                cls.inspect_references,  # type: ignore[arg-type]
                cls.train_members,  # type: ignore[arg-type]
                cls.inspect_members,  # type: ignore[arg-type]
                cls.record,  # type: ignore[arg-type]
            ),
            cls.results,  # type: ignore[arg-type]
        )

        spec.output("ensemble", valid_type=EnsembleData, help="The last round's ensemble.")
        spec.output_namespace("models", valid_type=ModelData, dynamic=True, help="The last round's members.")
        spec.output("dataset", valid_type=CrystalDatasetData, help="The final training dataset.")
        spec.output(
            "learning_curve",
            valid_type=orm.SinglefileData,
            help="CSV: per trained ensemble (round 0: the initial one) the reference calculations so far, "
            "the training set size and the validation MAE and MAE/MAD per cell and per atom per target.",
        )
        spec.output(
            "learning_curve_plot",
            valid_type=orm.SinglefileData,
            help="Validation MAE/MAD against references (PNG).",
        )
        spec.output(
            "summary",
            valid_type=orm.Dict,
            help="The rows, the structures computed per round, failed and unstable references with "
            "reasons, pool structures left out, and why the loop stopped.",
        )

        spec.exit_code(
            400, "ERROR_NO_SEED_REFERENCE", message="no reference of the seed batch succeeded: {failed}"
        )
        spec.exit_code(
            410,
            "ERROR_TRAINING_FAILED",
            message="round {round}: {trained} of {members} members trained, {needed} needed: {failed}",
        )
        spec.exit_code(
            420,
            "ERROR_PREDICTION_FAILED",
            message="round {round}: the prediction of the {what} failed: {error}",
        )

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        return list(self.inputs.targets.get_list())

    def _selection_target(self) -> str:
        return self.inputs.selection_target.value if "selection_target" in self.inputs else self.targets[0]

    def _stop_target(self) -> str:
        return self.inputs.stop_target.value if "stop_target" in self.inputs else self._selection_target()

    def _pool(self) -> dict[str, orm.StructureData]:
        if "pool_group" in self.inputs:
            return structures_from_group(self.inputs.pool_group.value)
        return dict(self.inputs.pool)

    # --- outline ---------------------------------------------------------------------------------

    def setup(self) -> None:
        pool = self._pool()
        # besides the pool, dataset and ensemble nodes the context holds labels, pks and plain values
        self.ctx.labels = sorted(pool)
        self.ctx.uuids = {label: pool[label].uuid for label in self.ctx.labels}
        self.ctx.pool = pool_dataset(**pool)
        self.ctx.invalid = dict(self.ctx.pool.base.attributes.get("skipped", {}))
        by_uuid = {uuid: label for label, uuid in self.ctx.uuids.items()}
        for uuid, reason in self.ctx.invalid.items():
            self.report(f"pool structure {by_uuid.get(uuid, uuid)}: left out: {reason}")
        self.ctx.dataset = self.inputs.get("dataset")
        self.ctx.round = 0
        self.ctx.computed = {}  # label -> round
        self.ctx.failed = {}  # label -> reason
        self.ctx.unstable = {}  # label -> lowest frequency
        self.ctx.rows = []
        self.ctx.errors = {}
        self.ctx.models = {}
        self.ctx.stopped = None
        self.ctx.selected = []

    def needs_seed(self) -> bool:
        return "dataset" not in self.inputs

    def _candidates(self) -> list[str]:
        invalid = set(self.ctx.invalid)
        return [
            label
            for label in self.ctx.labels
            if label not in self.ctx.computed and self.ctx.uuids[label] not in invalid
        ]

    def select_seed(self) -> None:
        size = self.inputs.seed_size.value if "seed_size" in self.inputs else self.inputs.per_round.value
        candidates = self._candidates()
        chosen = select_batch("random", size, np.zeros(len(candidates)), seed=self.inputs.seed.value)
        self.ctx.selected = [candidates[k] for k in chosen]
        self.report(
            f"seed batch: {len(self.ctx.selected)} random pool structures: {', '.join(self.ctx.selected)}"
        )

    def run_references(self) -> None:
        """One reference work chain per selected structure, all submitted before any is awaited."""
        process = load_reference_workchain(self.inputs.reference_workchain.value)
        common = dict(self.inputs.get("reference_inputs", {}))
        if "temperatures" in process.spec().inputs and "temperatures" not in common:
            common["temperatures"] = orm.List([self.inputs.temperature.value])
        pool = self._pool()
        self.ctx.submitted = {}
        for label in self.ctx.selected:
            inputs = {**common, "structure": pool[label]}
            inputs["metadata"] = {"call_link_label": f"reference_r{self.ctx.round}_{label}", "label": label}
            node = self.submit(process, **inputs)
            self.ctx.submitted[label] = node.pk
            self.to_context(**{f"reference_{label}": node})
            self.ctx.computed[label] = self.ctx.round

    def inspect_references(self) -> ExitCode | None:
        """Keep the references that succeeded and are stable; report the others, which are never
        selected again; extend the dataset with the kept ones."""
        structures: dict[str, orm.StructureData] = {}
        records: dict[str, orm.Dict] = {}
        for label in self.ctx.submitted:
            node = self.ctx[f"reference_{label}"]
            reason = None
            if not node.is_finished_ok:
                reason = node.exit_message or f"exit status {node.exit_status}"
                if node.is_excepted:
                    lines = (node.exception or "").strip().splitlines()
                    reason = f"excepted: {lines[-1] if lines else 'no exception recorded'}"
            elif any(port not in node.outputs for port in ("thermal_properties", "primitive_structure")):
                reason = "returned no thermal_properties or primitive_structure"
            else:
                record = node.outputs.thermal_properties.get_dict()
                try:
                    reference_targets(record, self.targets, self.inputs.temperature.value)
                except (KeyError, ValueError) as error:
                    reason = f"no usable {'/'.join(self.targets)}: {error}"
                else:
                    if record.get("stable") is False:
                        self.ctx.unstable[label] = record.get("min_freq_THz")
                        self.report(
                            f"{label}: imaginary modes (lowest frequency {record.get('min_freq_THz')} THz): "
                            "not added to the training data"
                        )
                        continue
                    structures[label] = node.outputs.primitive_structure
                    records[label] = node.outputs.thermal_properties
                    continue
            self.ctx.failed[label] = f"{node.process_label}<{node.pk}> failed: {reason}"
            self.report(f"{label}: reference skipped: {self.ctx.failed[label]}")
        self.ctx.added = len(structures)
        if not structures:
            if self.ctx.dataset is None:
                failed = "; ".join(f"{k}: {v}" for k, v in list(self.ctx.failed.items())[:5])
                return self.exit_codes("ERROR_NO_SEED_REFERENCE").format(failed=failed or "all unstable")
            return None
        settings = orm.Dict({"targets": self.targets, "temperature": self.inputs.temperature.value})
        previous = {"dataset": self.ctx.dataset} if self.ctx.dataset is not None else {}
        self.ctx.dataset = _call(
            extend_dataset,
            f"extend_dataset_r{self.ctx.round}",
            settings=settings,
            primitive_structures=structures,
            thermal_properties=records,
            **previous,
        )
        self.report(
            f"round {self.ctx.round}: {len(structures)} references added, dataset "
            f"CrystalDatasetData<{self.ctx.dataset.pk}> of {self.ctx.dataset.size} crystals"
        )
        return None

    def train_members(self) -> None:
        """``members`` training work chains with different seeds, all submitted at once; none when a
        round added no reference (the dataset is unchanged: the round before's ensemble is kept)."""
        self.ctx.retrained = self.ctx.round == 0 or self.ctx.added > 0
        if not self.ctx.retrained:
            self.report(
                f"round {self.ctx.round}: no reference added: the ensemble of the round before is kept"
            )
            return
        base = self.exposed_inputs(TrainWorkChain, namespace="training")
        train = dict(base.get("train", {}))
        parameters = train["parameters"].get_dict() if "parameters" in train else {}
        fine_tune = self.inputs.fine_tune.value and self.ctx.round > 0
        for k in range(self.inputs.members.value):
            member_parameters = {**parameters, "train": {**parameters.get("train", {})}}
            member_parameters["train"]["seed"] = 1000 * self.inputs.seed.value + k
            inputs = {
                **base,
                "train": {**train, "dataset": self.ctx.dataset, "parameters": orm.Dict(member_parameters)},
            }
            previous = self.ctx.models.get(f"m{k}")
            if fine_tune and previous is not None:
                inputs["train"]["model"] = orm.load_node(previous)
            inputs["metadata"] = {"call_link_label": f"train_r{self.ctx.round}_m{k}"}
            self.to_context(**{f"member_{k}": self.submit(TrainWorkChain, **inputs)})

    def inspect_members(self) -> ExitCode | None:
        """The members that trained make the round's ensemble, which predicts the validation set and
        the pool (all at once)."""
        if self.ctx.retrained:
            exit_code = self._make_ensemble()
            if exit_code is not None:
                return exit_code
        self._predict()
        return None

    def _make_ensemble(self) -> ExitCode | None:
        models, failed = {}, {}
        for k in range(self.inputs.members.value):
            node = self.ctx[f"member_{k}"]
            if node.is_finished_ok and "model" in node.outputs:
                models[f"m{k}"] = node.outputs.model
            else:
                failed[f"m{k}"] = f"{node.process_label}<{node.pk}>: {node.exit_message or node.exit_status}"
                self.report(f"round {self.ctx.round}: member m{k} failed to train: {failed[f'm{k}']}")
        needed = 1 if self.inputs.strategy.value == "random" else 2
        if len(models) < needed:
            return self.exit_codes("ERROR_TRAINING_FAILED").format(
                round=str(self.ctx.round),
                trained=str(len(models)),
                members=str(self.inputs.members.value),
                needed=str(needed),
                failed="; ".join(f"{k}: {v}" for k, v in failed.items()),
            )
        self.ctx.models = {key: node.pk for key, node in models.items()}
        settings = orm.Dict(
            {
                "name": f"active-learning-{self.node.pk}-round-{self.ctx.round}",
                "basis": "primitive cell",
                "title": f"active learning <{self.node.pk}>, round {self.ctx.round}: "
                f"{len(models)} members on {self.ctx.dataset.size} crystals",
            }
        )
        self.ctx.ensemble = _call(
            ensemble_from_models,
            f"ensemble_r{self.ctx.round}",
            settings=settings,
            **models,
        )
        return None

    def _predict(self) -> None:
        """One cgcnn.predict job per round: the pool not computed yet (when a selection follows) and
        the validation set together."""
        self.ctx.prediction = None
        predict_pool = (
            self._budget_left() and bool(self._candidates()) and self.inputs.strategy.value != "random"
        )
        if predict_pool:
            computed = orm.List([self.ctx.uuids[label] for label in self.ctx.computed])
            extra = {"validation": self.inputs.validation} if "validation" in self.inputs else {}
            dataset = _call(
                prediction_set, f"prediction_set_r{self.ctx.round}", self.ctx.pool, computed, **extra
            )
        elif "validation" in self.inputs:
            dataset = self.inputs.validation
        else:
            return None
        common = self.exposed_inputs(PredictCalculation, namespace="predict")
        inputs = {**common, "model": self.ctx.ensemble, "dataset": dataset}
        inputs["metadata"] = {**common.get("metadata", {}), "call_link_label": f"predict_r{self.ctx.round}"}
        self.ctx.prefix = VALIDATION_PREFIX if predict_pool else ""
        self.to_context(prediction=self.submit(PredictCalculation, **inputs))
        return None

    def _budget_left(self) -> bool:
        return bool(self.ctx.round < self.inputs.rounds.value)

    def _goals(self) -> dict[str, float]:
        goals = {}
        if "target_mae_over_mad" in self.inputs:
            goals["per_cell"] = self.inputs.target_mae_over_mad.value
        if "target_mae_over_mad_per_atom" in self.inputs:
            goals["per_atom"] = self.inputs.target_mae_over_mad_per_atom.value
        return goals

    def record(self) -> ExitCode | None:
        """The round's validation errors and learning-curve row; whether the target is reached."""
        errors = None
        if "validation" in self.inputs:
            node = self.ctx.prediction
            if not node.is_finished_ok:
                return self.exit_codes("ERROR_PREDICTION_FAILED").format(
                    round=str(self.ctx.round),
                    what="validation set",
                    error=node.exit_message or node.exit_status,
                )
            result = _call(
                validation_errors,
                f"errors_r{self.ctx.round}",
                node.outputs.predictions,
                self.inputs.validation,
                orm.Dict({"targets": self.targets, "id_prefix": self.ctx.prefix}),
            )
            self.ctx.errors[f"r{self.ctx.round}"] = result.pk
            errors = result.get_dict()
        counts = {
            "round": self.ctx.round,
            "n_references": len(self.ctx.computed),
            "n_added": self.ctx.dataset.size - (self.inputs.dataset.size if "dataset" in self.inputs else 0),
            "n_failed": len(self.ctx.failed),
            "n_unstable": len(self.ctx.unstable),
            "n_training": self.ctx.dataset.size,
            "members": len(self.ctx.models),
        }
        row = curve_row(counts, errors, self.targets)
        self.ctx.rows.append(row)
        goals, target = self._goals(), self._stop_target()
        if errors is not None:
            per_cell, per_atom = errors[target]["mae_over_mad"], errors[target]["per_atom"]["mae_over_mad"]
            self.report(
                f"round {self.ctx.round}: {counts['n_references']} references, {counts['n_training']} "
                f"training crystals; validation {target} MAE/MAD {per_cell} per cell, {per_atom} per atom"
            )
            reached = [
                value is not None and value <= goals[key]
                for key, value in (("per_cell", per_cell), ("per_atom", per_atom))
                if key in goals
            ]
            if reached and all(reached):
                self.ctx.stopped = (
                    f"target reached in round {self.ctx.round}: {target} MAE/MAD {per_cell} per cell, "
                    f"{per_atom} per atom"
                )
        if self.ctx.stopped is None and not self._budget_left():
            self.ctx.stopped = f"budget spent: {self.inputs.rounds.value} rounds"
        if self.ctx.stopped is None and not self._candidates():
            self.ctx.stopped = f"pool exhausted after round {self.ctx.round}"
        return None

    def should_continue(self) -> bool:
        return bool(self.ctx.stopped is None)

    def select(self) -> ExitCode | None:
        """The next batch: the pool structures not computed yet, ranked by the strategy."""
        self.ctx.round += 1
        candidates = self._candidates()
        strategy, k = self.inputs.strategy.value, self.inputs.per_round.value
        seed = 1000 * self.inputs.seed.value + self.ctx.round
        if strategy == "random":
            chosen = select_batch("random", k, np.zeros(len(candidates)), seed=seed)
            self.ctx.selected = [candidates[i] for i in chosen]
            self.report(f"round {self.ctx.round}: random batch {', '.join(self.ctx.selected)}")
            return None
        node = self.ctx.prediction
        if not node.is_finished_ok:
            return self.exit_codes("ERROR_PREDICTION_FAILED").format(
                round=str(self.ctx.round), what="pool", error=node.exit_message or node.exit_status
            )
        predictions = node.outputs.predictions
        index = self.targets.index(self._selection_target())
        per_atom = self.inputs.selection_per_atom.value
        spread = np.asarray(predictions.get_array("std"), dtype=float).reshape(
            len(predictions.get_array("ids")), -1
        )
        by_uuid = {
            str(i): float(s) for i, s in zip(predictions.get_array("ids"), spread[:, index], strict=True)
        }
        pool = self._pool()
        std = np.array([by_uuid.get(self.ctx.uuids[label], np.nan) for label in candidates])
        atoms = np.array([len(pool[label].sites) for label in candidates], dtype=float)
        if per_atom:
            std = std / atoms
        features = None
        if strategy == "diverse":
            features = composition_features(
                [
                    np.array([site.specie.Z for site in pool[label].get_pymatgen_structure()])
                    for label in candidates
                ],
                np.array([pool[label].get_cell_volume() for label in candidates]),
            )
        chosen = select_batch(strategy, k, std, seed=seed, features=features)
        self.ctx.selected = [candidates[i] for i in chosen]
        spreads = ", ".join(f"{candidates[i]} ({std[i]:.3g})" for i in chosen)
        self.report(
            f"round {self.ctx.round}: {strategy} batch (spread{' per atom' if per_atom else ''}): {spreads}"
        )
        return None

    def results(self) -> None:
        self.out("ensemble", self.ctx.ensemble)
        self.out("dataset", self.ctx.dataset)
        for key, pk in self.ctx.models.items():
            self.out(f"models.{key}", orm.load_node(pk))
        record = {
            "targets": self.targets,
            "temperature_K": self.inputs.temperature.value,
            "strategy": self.inputs.strategy.value,
            "selection_target": self._selection_target(),
            "stop_target": self._stop_target(),
            "goals": self._goals(),
            "rows": self.ctx.rows,
            "computed": {
                label: {"round": r, "uuid": self.ctx.uuids[label]} for label, r in self.ctx.computed.items()
            },
            "failed": self.ctx.failed,
            "unstable": self.ctx.unstable,
            "invalid": self.ctx.invalid,
            "stopped": self.ctx.stopped,
            "rounds": self.ctx.round,
            "n_references": len(self.ctx.computed),
            "reference_workchain": self.inputs.reference_workchain.value,
        }
        errors = {key: orm.load_node(pk) for key, pk in self.ctx.errors.items()}
        curve = _call(learning_curve, "learning_curve", orm.Dict(record), **errors)
        self.out("learning_curve", curve["table"])
        self.out("learning_curve_plot", curve["plot"])
        self.out("summary", curve["summary"])
        self.report(f"stopped: {self.ctx.stopped}")
