"""``cgcnn.hyperparameter_search``: many short trainings as concurrent jobs, the poor ones stopped early.

Optuna asks for each trial's parameters and is told its validation score (ask and tell). Every trial
is a ``cgcnn.train`` restart work chain on the computer, so trials are jobs under its scheduler, at
most ``max_concurrent`` at a time. Successive halving: a trial trains to the first rung's epochs
(its run planned for ``max_epochs``, the learning-rate schedule too, and paused there), and a trial
the pruner keeps continues from its checkpoint (``parent_folder``) to the next rung instead of
training again. The test part is split off first and evaluated once, by a ``cgcnn.predict`` job with
the best trial's model.

The study's whole state is a plain list of trial records in the context (see
:class:`~aiida_cgcnn.training.search.SearchStudy`): it is checkpointed with the work chain, and
Optuna's study is rebuilt from it for each decision, so a search that continues after a daemon
restart decides as one that never stopped. The trials submitted in one step are waited for together
(a work chain step waits for all it submitted); the next step submits the promoted trials first.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import ExitCode, WorkChain, while_
from aiida.engine.processes.workchains.workchain import WorkChainSpec

from ..calculations.functions.active_learning import validation_errors
from ..calculations.functions.search import search_report, split_for_search
from ..calculations.predict import PredictCalculation
from ..data.dataset import CrystalDatasetData
from ..data.model import ModelData
from ..errors import ConfigError
from ..training.search import (
    PRUNERS,
    SAMPLERS,
    Rungs,
    SearchStudy,
    check_split,
    search_train_settings,
    trial_parameters,
)
from .active_learning import _call
from .train import TrainWorkChain

__all__ = ["HyperparameterSearchWorkChain"]

#: Training settings the search sets itself.
SEARCH_SETS = ("epochs", "stop_epoch", "patience", "train_ratio", "val_ratio", "test_ratio")


def _space(inputs: Mapping[str, Any]) -> Any:
    space = inputs.get("space")
    if space is None:
        return "cgcnn"
    return space.value if isinstance(space, orm.Str) else {"parameters": space.get_dict()}


def _study(inputs: Mapping[str, Any]) -> SearchStudy:
    def value(name: str, default: Any) -> Any:
        node = inputs.get(name)
        return default if node is None else node.value

    return SearchStudy(
        _space(inputs),
        Rungs(value("min_epochs", 5), value("max_epochs", 45), value("reduction_factor", 3)),
        metric=value("metric", "mae"),
        sampler=value("sampler", "tpe"),
        pruner=value("pruner", "asha"),
        seed=value("seed", 0),
        n_startup_trials=value("startup_trials", 5),
    )


def validate_inputs(inputs: dict[str, Any], _: Any) -> str | None:
    try:
        _study(inputs)
        if "split" in inputs:
            check_split(list(inputs["split"].get_list()))
    except ConfigError as error:
        return str(error)
    for name in ("trials", "max_concurrent"):
        if name in inputs and inputs[name].value < 1:
            return f"`{name}` must be at least 1"
    parameters = inputs.get("training", {}).get("train", {}).get("parameters")
    train = parameters.get_dict().get("train", {}) if parameters is not None else {}
    fixed = sorted(set(train) & set(SEARCH_SETS))
    if fixed:
        return (
            f"training.train.parameters sets train.{', train.'.join(fixed)}, which the search sets itself "
            "(max_epochs, the rungs and split); leave them out"
        )
    return None


class HyperparameterSearchWorkChain(WorkChain):
    """Search a training's hyperparameters with Optuna; see the module's docstring."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input("dataset", valid_type=CrystalDatasetData, help="All the data; the test part is split off.")
        spec.input(
            "space",
            valid_type=(orm.Str, orm.Dict),
            default=lambda: orm.Str("cgcnn"),
            help="A shipped search space (cgcnn, hybrid, architecture; docs/search.md) or a Dict of "
            "parameters by section: {'model': {'n_conv': {'type': 'int', 'low': 1, 'high': 5}}, "
            "'train': {...}, 'descriptors': {...}}.",
        )
        spec.input("trials", valid_type=orm.Int, default=lambda: orm.Int(20), help="Trials in all.")
        spec.input(
            "max_concurrent",
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            help="Training jobs at a time.",
        )
        spec.input(
            "sampler", valid_type=orm.Str, default=lambda: orm.Str("tpe"), help=f"{', '.join(SAMPLERS)}."
        )
        spec.input(
            "pruner",
            valid_type=orm.Str,
            default=lambda: orm.Str("asha"),
            help=f"{', '.join(PRUNERS)}: asha is successive halving, promoted trials go on from their "
            "checkpoints.",
        )
        spec.input(
            "min_epochs", valid_type=orm.Int, default=lambda: orm.Int(5), help="Epochs of the first rung."
        )
        spec.input(
            "max_epochs", valid_type=orm.Int, default=lambda: orm.Int(45), help="Epochs of a complete trial."
        )
        spec.input("reduction_factor", valid_type=orm.Int, default=lambda: orm.Int(3), help="η.")
        spec.input(
            "metric",
            valid_type=orm.Str,
            default=lambda: orm.Str("mae"),
            help="Validation metric optimised (mae, rmse: minimised; accuracy, roc_auc: maximised).",
        )
        spec.input(
            "seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Sampler, split and training seed."
        )
        spec.input(
            "startup_trials",
            valid_type=orm.Int,
            default=lambda: orm.Int(5),
            help="Random trials before TPE models the results (and before the median pruner prunes).",
        )
        spec.input(
            "split",
            valid_type=orm.List,
            default=lambda: orm.List([0.6, 0.2, 0.2]),
            help="Train, validation and test ratios of `dataset`; the test part is held out.",
        )
        spec.expose_inputs(
            TrainWorkChain,
            namespace="training",
            exclude=("train.dataset", "train.model", "train.parent_folder"),
            namespace_options={
                "help": "Every trial's training: train.code, train.metadata.options, train.parameters (the "
                "settings all trials share; the sampled ones override them), the restart settings."
            },
        )
        spec.expose_inputs(
            PredictCalculation,
            namespace="predict",
            exclude=("model", "dataset"),
            namespace_options={"help": "The best model's prediction of the test part: code, options."},
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,  # type: ignore[arg-type]
            while_(cls.searching)(cls.launch, cls.inspect),  # type: ignore[arg-type]
            cls.evaluate,  # type: ignore[arg-type]
            cls.results,  # type: ignore[arg-type]
        )
        spec.output("model", valid_type=ModelData, help="The best trial's model.")
        spec.output(
            "trials",
            valid_type=orm.SinglefileData,
            help="CSV: per trial its parameters, epochs, validation score, state and calculations' pks.",
        )
        spec.output("plot", valid_type=orm.SinglefileData, help="Score against trial and importances (PNG).")
        spec.output("summary", valid_type=orm.Dict, help="Best trial, states, importances, test errors.")
        spec.output("test_errors", valid_type=orm.Dict, help="The best model's errors on the held-out part.")
        spec.output(
            "study",
            valid_type=orm.SinglefileData,
            help="study.json: the settings and every trial's record (the search's whole state).",
        )
        spec.exit_code(400, "ERROR_NO_TRIAL_COMPLETED", message="no trial completed: {failed}")
        spec.exit_code(
            410, "ERROR_TEST_PREDICTION_FAILED", message="the test part's prediction failed: {error}"
        )

    # --- outline ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.ctx.study = _study(self.inputs).to_dict()
        split = list(self.inputs.split.get_list())
        parts = _call(
            split_for_search,
            "split",
            self.inputs.dataset,
            orm.Dict({"split": split, "seed": self.inputs.seed.value}),
        )
        self.ctx.search_dataset, self.ctx.test_dataset = parts["search"], parts["test"]
        self.ctx.pending = []  # [trial, epochs, remote folder uuid]: promoted, to continue
        self.ctx.running = []  # [context key, trial, epochs]
        self.report(
            f"{parts['search'].size} structures for the search, {parts['test'].size} held out for the test"
        )

    def searching(self) -> bool:
        study = SearchStudy.from_dict(self.ctx.study)
        return bool(self.ctx.pending) or len(study.records) < self.inputs.trials.value

    def launch(self) -> None:
        """Promoted trials first, then new ones, up to ``max_concurrent`` jobs."""
        study = SearchStudy.from_dict(self.ctx.study)
        base = self.exposed_inputs(TrainWorkChain, namespace="training")
        train = dict(base.get("train", {}))
        shared = train["parameters"].get_dict() if "parameters" in train else {}
        shared.setdefault("train", {})
        shared["train"] = {**shared["train"], **search_train_settings(tuple(self.inputs.split.get_list()))}
        shared["train"].setdefault("seed", self.inputs.seed.value)
        while len(self.ctx.running) < self.inputs.max_concurrent.value and (
            self.ctx.pending or len(study.records) < self.inputs.trials.value
        ):
            if self.ctx.pending:
                number, epochs, parent = self.ctx.pending.pop(0)
            else:
                number, epochs, parent = study.ask()["number"], study.rungs.epochs[0], None
            record = study.record(number)
            parameters = trial_parameters(record["params"], shared)
            parameters["train"]["epochs"] = study.rungs.max_epochs
            if epochs < study.rungs.max_epochs:
                parameters["train"]["stop_epoch"] = epochs
            inputs = {
                **base,
                "train": {**train, "dataset": self.ctx.search_dataset, "parameters": orm.Dict(parameters)},
                "metadata": {"call_link_label": f"trial_{number}_epochs_{epochs}"},
            }
            if parent is not None:
                inputs["train"]["parent_folder"] = orm.load_node(parent)
            node = self.submit(TrainWorkChain, **inputs)
            record.setdefault("pks", []).append(node.pk)
            key = f"trial_{number}_epochs_{epochs}"
            self.to_context(**{key: node})
            self.ctx.running.append([key, number, epochs])
            self.report(f"trial {number}: {node.process_label}<{node.pk}> trains to epoch {epochs}")
        self.ctx.study = study.to_dict()

    def inspect(self) -> None:
        study = SearchStudy.from_dict(self.ctx.study)
        metric = study.metric
        for key, number, epochs in self.ctx.running:
            node = self.ctx[key]
            score = None
            if node.is_finished_ok and "metrics" in node.outputs:
                metrics = node.outputs.metrics.get_dict()
                score = metrics.get("val", {}).get(metric)
            if score is None:
                if not node.is_finished_ok:
                    why = node.exit_message or f"exit status {node.exit_status} ({node.process_state.value})"
                else:
                    why = f"no validation {metric} in its metrics"
                reason = f"{node.process_label}<{node.pk}>: {why}"
                study.fail(number, reason)
                self.report(f"trial {number} failed, the search goes on: {reason}")
                continue
            done = int(metrics.get("epochs_run", epochs))
            decision = study.tell(number, done, float(score))
            study.record(number)["model"] = node.outputs.model.uuid
            self.report(f"trial {number}: epoch {done}, validation {metric} {score:.4g}: {decision}")
            if decision == "continue":
                self.ctx.pending.append([number, study.rungs.after(done), node.outputs.remote_folder.uuid])
        self.ctx.running = []
        self.ctx.study = study.to_dict()

    def evaluate(self) -> ExitCode | None:
        study = SearchStudy.from_dict(self.ctx.study)
        best = study.best()
        if best is None:
            failed = "; ".join(f"trial {r['number']}: {r.get('reason', r['state'])}" for r in study.records)
            return self.exit_codes.ERROR_NO_TRIAL_COMPLETED.format(failed=failed)  # type: ignore[no-any-return]
        self.ctx.best_model = best["model"]
        common = self.exposed_inputs(PredictCalculation, namespace="predict")
        inputs = {
            **common,
            "model": orm.load_node(best["model"]),
            "dataset": self.ctx.test_dataset,
            "metadata": {**common.get("metadata", {}), "call_link_label": "predict_test"},
        }
        self.report(
            f"best trial {best['number']} (validation {study.metric} {best['value']:.4g}): "
            "predicting the test part"
        )
        self.to_context(test_prediction=self.submit(PredictCalculation, **inputs))
        return None

    def results(self) -> ExitCode | None:
        prediction = self.ctx.test_prediction
        if not prediction.is_finished_ok:
            return self.exit_codes.ERROR_TEST_PREDICTION_FAILED.format(  # type: ignore[no-any-return]
                error=f"{prediction.process_label}<{prediction.pk}>: {prediction.exit_message}"
            )
        test = self.ctx.test_dataset
        errors = _call(
            validation_errors,
            "test_errors",
            prediction.outputs.predictions,
            test,
            orm.Dict({"targets": list(test.target_names)}),
        )
        study = orm.SinglefileData(
            io.BytesIO(json.dumps(self.ctx.study, indent=1).encode()), filename="study.json"
        )
        report = _call(search_report, "report", study, test_errors=errors)
        self.out("model", orm.load_node(self.ctx.best_model))
        self.out("trials", report["trials"])
        self.out("plot", report["plot"])
        self.out("summary", report["summary"])
        self.out("test_errors", errors)
        self.out("study", study)
        return None
