"""``cgcnn.screen``: predict a large set of structures in shards, one ``cgcnn.predict`` job per shard.

The structures (a namespace, or a group of 10^4 to 10^6) are cut into shards in input order; a
calcfunction makes each shard's dataset (invalid structures left out and listed), and the shard's
``cgcnn.predict`` job is submitted as soon as it is made, so the computer's scheduler runs the jobs in
parallel and the first ones run while the next shards are read. A job
that fails is submitted once more; a shard that fails twice is reported while the others' results
are kept. A calcfunction gathers every prediction into one table (CSV, input order, structure UUIDs,
values and spreads, the criterion's selection), the selected structures go into a group, and an
optional verification runs ``cgcnn.phonon_comparison`` on the best and the most uncertain of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from aiida import orm
from aiida.common.exceptions import MultipleObjectsError, NotExistent
from aiida.engine import ExitCode, WorkChain, append_, if_, while_
from aiida.engine.processes.workchains.workchain import WorkChainSpec

from ..calculations.functions.ensemble import ensemble_from_models
from ..calculations.functions.screen import (
    SUMMARY_UNCERTAIN,
    group_structure_rows,
    group_structures,
    screen_shard,
    screen_shard_by_uuid,
    screening_table,
    shard_link_label,
    shard_uuids_node,
)
from ..calculations.predict import PredictCalculation
from ..data.ensemble import EnsembleData
from ..data.model import ModelData
from ..phonons.compare import find_phonon_target
from ..phonons.errors import PhononInputError
from ..phonons.settings import PhononSettings
from ..selection import Criterion
from .phonon_comparison import PhononComparisonWorkChain

__all__ = ["SHARD_VARIABLE", "ScreenWorkChain"]

#: Environment variable that tells each ``cgcnn.predict`` job of a screen its shard (0, 1, ...).
SHARD_VARIABLE = "CGCNN_SCREEN_SHARD"
#: How many times a shard's job is submitted before the shard is reported as failed.
ATTEMPTS = 2
_MODEL_INPUTS = ("model", "models", "pretrained")
#: Above this many linked structures per shard the work chain says what linking costs.
LINKED_SHARD_WARNING = 1000
#: Seconds a screen waits for a shard's job to reach the scheduler before it reads the next shard.
START_WAIT = 10.0
#: Structures verified of each kind (best, most uncertain) when neither verify_count nor top_k says.
VERIFY_COUNT = 3


def _load_group(value: str) -> orm.Group:
    try:
        return orm.load_group(value)
    except (NotExistent, MultipleObjectsError) as error:
        raise ValueError(
            f"structure_group: no single group {value!r} ({error}); `verdi group list` shows them"
        ) from error


def _model_facts(inputs: dict[str, Any]) -> tuple[list[str], list[str], str] | str:
    """Targets, units and a name of the model inputs, or why they are wrong."""
    given = [key for key in _MODEL_INPUTS if key in inputs and (key != "models" or inputs[key])]
    if len(given) != 1:
        return (
            "give one model: `model` (ModelData or EnsembleData), `models` (ModelData nodes, made an "
            f"ensemble) or `pretrained` (a shipped ensemble's name); got {given or 'none'}"
        )
    if "pretrained" in inputs:
        from ..pretrained.registry import UnknownModelError, card

        try:
            entry = card(inputs["pretrained"].value)
        except UnknownModelError as error:
            return f"pretrained: {error}"
        return [x["name"] for x in entry["targets"]], [x["unit"] for x in entry["targets"]], entry["name"]
    node = inputs["model"] if "model" in inputs else next(iter(dict(inputs["models"]).values()))
    name = f"{type(node).__name__}<{node.pk}>"
    if isinstance(node, ModelData) and node.base.attributes.get("task") != "regression":
        return f"model {name} is a classifier: a screen ranks predicted values"
    return list(node.targets), list(node.units), name


def validate_inputs(inputs: dict[str, Any], _: Any) -> str | None:
    """One source of structures, one model, a criterion on one of its targets, a shard size."""
    has_namespace = bool(inputs.get("structures"))
    if has_namespace == ("structure_group" in inputs):
        return (
            "give the structures either as the `structures` namespace or as `structure_group` "
            "(a group's label or UUID)"
        )
    if "structure_group" in inputs:
        try:
            group = _load_group(inputs["structure_group"].value)
        except ValueError as error:
            return str(error)
        if group_structures(group).count() == 0:
            return f"structure_group {group.label!r} holds no StructureData"
    facts = _model_facts(inputs)
    if isinstance(facts, str):
        return facts
    targets, units, name = facts
    try:
        criterion = Criterion.from_dict(inputs["criterion"].get_dict())
    except (TypeError, ValueError) as error:
        return f"criterion: {error}"
    if criterion.target not in targets:
        return (
            f"criterion: target {criterion.target!r} is not predicted by {name}, whose targets are {targets}"
        )
    if criterion.max_std is not None and isinstance(inputs.get("model"), ModelData):
        return (
            f"criterion: max_std needs a spread, and {name} is one model: give an ensemble (`models`, "
            "an EnsembleData or `pretrained`) or leave max_std out"
        )
    if inputs["shard_size"].value < 1:
        return f"shard_size {inputs['shard_size'].value}: give a positive number of structures per job"
    if "verify_count" in inputs and not 1 <= inputs["verify_count"].value <= SUMMARY_UNCERTAIN:
        return (
            f"verify_count {inputs['verify_count'].value}: give a number of structures from 1 to "
            f"{SUMMARY_UNCERTAIN}"
        )
    if "verify" in inputs:
        reference = inputs["verify"].get("reference", {})
        if "engine" not in reference and "force_workchain" not in reference:
            return (
                "verify: give the reference's force source, verify.reference.engine (e.g. "
                "{'calculator': 'ase.calculators.emt.EMT'}) or verify.reference.force_workchain"
            )
        try:
            PhononSettings.from_dict(reference["phonopy"].get_dict() if "phonopy" in reference else {})
        except PhononInputError as error:
            return f"verify.reference.phonopy: {error}"
        temperature = (
            inputs["verify"]["model_temperature"].value if "model_temperature" in inputs["verify"] else 300.0
        )
        for prop in ("U", "Cv"):
            try:
                find_phonon_target(prop, targets, units, name, temperature)
            except PhononInputError as error:
                return f"verify: the model must predict U and Cv for the phonon comparison: {error}"
    return None


class ScreenWorkChain(WorkChain):
    """Screen structures with a model or ensemble: shards predicted in parallel, one table, a group."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input_namespace(
            "structures",
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help="A small set of structures by link label, screened in the order of their labels "
            "(label them s0001, s0002, ... to set it); for large sets use `structure_group`.",
        )
        spec.input(
            "structure_group",
            valid_type=orm.Str,
            required=False,
            serializer=orm.to_aiida_type,
            help="Label or UUID of a group of StructureData, screened in the order of their pks. A group "
            "is not a node: each structure is linked through the calcfunction that makes its shard's "
            "dataset, not to this work chain.",
        )
        spec.input(
            "model",
            valid_type=(ModelData, EnsembleData),
            required=False,
            help="A trained model, or an ensemble (mean, spread, out-of-domain flags).",
        )
        spec.input_namespace(
            "models",
            valid_type=ModelData,
            dynamic=True,
            required=False,
            help="Trained models of the same targets, made one ensemble by ensemble_from_models.",
        )
        spec.input(
            "ensemble_settings",
            valid_type=orm.Dict,
            required=False,
            help="settings of ensemble_from_models for `models` (name, basis, std_scale, ...).",
        )
        spec.input(
            "pretrained",
            valid_type=orm.Str,
            required=False,
            serializer=orm.to_aiida_type,
            help="A shipped ensemble by name (`aiida-cgcnn pretrained list`), imported once per profile.",
        )
        spec.input(
            "criterion",
            valid_type=orm.Dict,
            serializer=orm.to_aiida_type,
            help="What to keep (aiida_cgcnn.selection.Criterion): target, direction (max/min), minimum, "
            "maximum, max_std, top_k, per_atom.",
        )
        spec.input("code", valid_type=orm.AbstractCode, help="The aiida-cgcnn code that runs cgcnn.predict.")
        spec.input(
            "shard_size",
            valid_type=orm.Int,
            default=lambda: orm.Int(10000),
            serializer=orm.to_aiida_type,
            help="Structures per cgcnn.predict job [10000].",
        )
        spec.input(
            "link_structures",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            serializer=orm.to_aiida_type,
            help="Link every structure to the calcfunction that makes its shard's dataset [False]. "
            "aiida-core's linking costs time in the square of the shard's size, so by default each "
            "shard's calcfunction takes the UUIDs and the dataset names them "
            "(CrystalDatasetData.name_structures); find_predictions finds a structure's prediction "
            "either way.",
        )
        spec.input(
            "selected_group",
            valid_type=orm.Str,
            required=False,
            serializer=orm.to_aiida_type,
            help="Label of the group that gets the selected structures [cgcnn/screen/<pk>/selected].",
        )
        spec.expose_inputs(
            PredictCalculation,
            namespace="predict",
            exclude=("code", "model", "dataset"),
            namespace_options={
                "help": "Passed on to every shard's cgcnn.predict job: device, batch_size and "
                "metadata.options (resources, queue, walltime, ...)."
            },
        )
        spec.expose_inputs(
            PhononComparisonWorkChain,
            namespace="verify",
            exclude=("structures", "phonopy_data", "model", "model_u", "model_cv"),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Verification: the reference inputs of cgcnn.phonon_comparison (e.g. "
                "reference.engine, reference.phonopy), run on the best and the most uncertain "
                "candidates with the screen's model, which must predict U and Cv.",
            },
        )
        # the comparison's own validator wants its crystals, which the screen picks: checked here instead
        spec.inputs["verify"].validator = None
        spec.input(
            "verify_count",
            valid_type=orm.Int,
            required=False,
            serializer=orm.to_aiida_type,
            help="How many of the best and how many of the most uncertain structures are verified "
            "[the criterion's top_k, else 3; at most 100].",
        )
        spec.inputs.validator = validate_inputs

        # aiida types the steps as Callable[[WorkChain], ...], which a subclass's methods are not
        steps: Any = cls
        spec.outline(
            steps.setup,
            steps.build_shards,
            if_(steps.has_datasets)(while_(steps.should_retry)(steps.retry_failed)),
            steps.gather,
            if_(steps.should_verify)(steps.run_verification, steps.inspect_verification),
            steps.finalize,
        )

        spec.output(
            "table",
            valid_type=orm.SinglefileData,
            help="screening.csv: every structure in input order with its UUID, pk, label, values, spreads, "
            "out-of-domain reason, status (predicted/invalid/failed) with the reason, score, selected, rank.",
        )
        spec.output(
            "summary",
            valid_type=orm.Dict,
            help="Counts (structures, predicted, invalid, in failed shards, selected), invalid "
            "structures with their reasons, failed shards, each shard's calculations, the criterion, "
            "the model and the group of the selected structures.",
        )
        spec.output(
            "model", valid_type=(ModelData, EnsembleData), help="The model or ensemble that predicted."
        )
        spec.expose_outputs(
            PhononComparisonWorkChain,
            namespace="verification",
            include=("comparison", "parity_plot", "references", "predictions"),
            namespace_options={
                "required": False,
                "help": "The phonon comparison of the verified candidates.",
            },
        )
        spec.exit_code(
            401,
            "ERROR_SHARDS_FAILED",
            message="{failed} of {shards} shard(s) failed twice ({which}); the table has the other shards' "
            "predictions",
        )
        spec.exit_code(
            402,
            "ERROR_VERIFICATION_FAILED",
            message="the verification failed ({process}: {reason}); the screen's outputs are complete",
        )
        spec.exit_code(410, "ERROR_ALL_SHARDS_FAILED", message="every shard's cgcnn.predict job failed twice")
        spec.exit_code(
            411, "ERROR_NO_VALID_STRUCTURE", message="no structure is valid: see the table's reasons"
        )

    # --- steps ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """The model: given, an ensemble of the given models, or the imported pretrained ensemble."""
        if "model" in self.inputs:
            self.ctx.model = self.inputs.model
        elif "pretrained" in self.inputs:
            from ..data.pretrained import import_pretrained

            self.ctx.model = import_pretrained(self.inputs.pretrained.value)
        else:
            extra = {"settings": self.inputs.ensemble_settings} if "ensemble_settings" in self.inputs else {}
            members = dict(self.inputs.models)
            self.ctx.model = ensemble_from_models(
                **extra,
                **members,
                metadata={"call_link_label": "ensemble"},  # type: ignore[arg-type]  # an engine input
            )
        self.ctx.criterion = Criterion.from_dict(self.inputs.criterion.get_dict())
        self.ctx.failed = {}

    def _shards(self) -> Any:
        """Per shard, in input order: its stored structures (to be linked) or their UUIDs. A group is read
        as pks and UUIDs first, then, to be linked, one shard's nodes at a time (by pk range)."""
        size = self.inputs.shard_size.value
        link = self.inputs.link_structures.value
        if "structures" in self.inputs and self.inputs.structures:
            nodes = [self.inputs.structures[label] for label in sorted(self.inputs.structures)]
            for start in range(0, len(nodes), size):
                chunk = nodes[start : start + size]
                yield chunk if link else [node.uuid for node in chunk]
            return
        group = _load_group(self.inputs.structure_group.value)
        rows = group_structure_rows(group)
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            if not link:
                yield [uuid for _, uuid in chunk]
                continue
            shard = group_structures(group)
            shard.add_filter("structure", {"id": {">=": chunk[0][0], "<=": chunk[-1][0]}})
            shard.add_projection("structure", "*")
            shard.order_by({"structure": "id"})
            yield cast("list[orm.StructureData]", shard.all(flat=True))

    def build_shards(self) -> None:
        """One dataset per shard, made by :func:`screen_shard` from the shard's structures (linked), or by
        :func:`screen_shard_by_uuid` from their UUIDs, and its job submitted at once.

        One step for every shard: a daemon restart during it makes the shards again and submits their
        jobs again (the first jobs' results are then not used), as for any step that submits before
        the work chain's next checkpoint."""
        self.ctx.shards = []
        position = 0
        if self.inputs.link_structures.value and self.inputs.shard_size.value > LINKED_SHARD_WARNING:
            self.report(
                f"linking up to {self.inputs.shard_size.value} structures per shard: aiida-core's cost grows "
                "with the square of that number; for large groups give link_structures False"
            )
        for index, chunk in enumerate(self._shards()):
            metadata = {"call_link_label": f"shard_{index:04d}", "label": f"screen shard {index}"}
            if self.inputs.link_structures.value:
                inputs = {shard_link_label(position + k): node for k, node in enumerate(chunk)}
                outputs = screen_shard(**inputs, metadata=metadata)  # type: ignore[arg-type]
            else:
                uuids = shard_uuids_node(chunk)
                outputs = screen_shard_by_uuid(uuids=uuids, metadata=metadata)  # type: ignore[call-arg]
            position += len(chunk)
            shard = {
                "index": index,
                "size": len(chunk),
                "structures": outputs["structures"],
                "dataset": outputs.get("dataset"),
            }
            self.ctx.shards.append(shard)
            # each job as soon as its shard is made and started before the next shard is read (the
            # last one before the step's checkpoint): it runs meanwhile
            if shard["dataset"] is not None:
                _let_start(self._submit(shard))
        self.report(
            f"{position} structures in {len(self.ctx.shards)} shard(s) "
            f"of at most {self.inputs.shard_size.value}"
        )

    def has_datasets(self) -> bool:
        return any(shard["dataset"] is not None for shard in self.ctx.shards)

    def _submit(self, shard: dict[str, Any]) -> orm.CalcJobNode:
        index = shard["index"]
        inputs = self.exposed_inputs(PredictCalculation, namespace="predict")
        metadata = dict(inputs.get("metadata", {}))
        options = dict(metadata.get("options", {}))
        options["environment_variables"] = {
            **dict(options.get("environment_variables", {})),
            SHARD_VARIABLE: str(index),
        }
        metadata.update(
            options=options, call_link_label=f"predict_{index:04d}", label=f"screen shard {index}"
        )
        inputs.update(
            code=self.inputs.code, model=self.ctx.model, dataset=shard["dataset"], metadata=metadata
        )
        node = cast(orm.CalcJobNode, self.submit(PredictCalculation, **inputs))
        self.to_context(**{f"predict_{index:04d}": append_(node)})
        return node

    def _attempts(self, index: int) -> list[orm.CalcJobNode]:
        return list(self.ctx.get(f"predict_{index:04d}", []))

    def _failed_now(self) -> list[dict[str, Any]]:
        return [
            shard
            for shard in self.ctx.shards
            if shard["dataset"] is not None and not self._attempts(shard["index"])[-1].is_finished_ok
        ]

    def should_retry(self) -> bool:
        return any(len(self._attempts(shard["index"])) < ATTEMPTS for shard in self._failed_now())

    def retry_failed(self) -> None:
        """Submit each shard whose job failed once more."""
        for shard in self._failed_now():
            attempts = self._attempts(shard["index"])
            if len(attempts) < ATTEMPTS:
                node = attempts[-1]
                self.report(f"shard {shard['index']}: {_why(node)}; submitting it again")
                self._submit(shard)

    def gather(self) -> None:
        """One table and summary of every shard; the selected structures into the group."""
        model = self.ctx.model
        failed: dict[str, str] = {}
        shard_inputs: dict[str, orm.Data] = {}
        shards = []
        for shard in self.ctx.shards:
            index = shard["index"]
            key = f"{index:04d}"
            attempts = self._attempts(index)
            shard_inputs[f"structures_{key}"] = shard["structures"]
            status = "no valid structure"
            if attempts:
                last = attempts[-1]
                if last.is_finished_ok:
                    status = "predicted"
                    shard_inputs[f"predictions_{key}"] = last.outputs.predictions
                    shard_inputs[f"skipped_{key}"] = last.outputs.skipped
                    if "out_of_domain" in last.outputs:
                        shard_inputs[f"out_of_domain_{key}"] = last.outputs.out_of_domain
                else:
                    status = "failed"
                    failed[str(index)] = f"shard {index} failed {len(attempts)} times, last: {_why(last)}"
                    self.report(failed[str(index)])
            shards.append(
                {
                    "shard": index,
                    "structures": shard["size"],
                    "dataset": None if shard["dataset"] is None else shard["dataset"].pk,
                    "calculations": [node.pk for node in attempts],
                    "status": status,
                }
            )
        label = (
            self.inputs.selected_group.value
            if "selected_group" in self.inputs
            else f"cgcnn/screen/{self.node.pk}/selected"
        )
        group, _ = orm.Group.collection.get_or_create(label)
        group.description = group.description or f"structures selected by cgcnn.screen<{self.node.pk}>"
        ensemble = isinstance(model, EnsembleData)
        context = {
            "model": {"uuid": model.uuid, "pk": model.pk, "label": _model_label(model)},
            "targets": list(model.targets),
            "units": list(model.units),
            "basis": list(model.basis) if ensemble else ["intensive"] * len(model.targets),
            "ensemble": ensemble,
            "failed": failed,
            "shards": shards,
            "group": {"label": group.label, "uuid": group.uuid},
        }
        result = screening_table(
            criterion=self.inputs.criterion,
            context=orm.Dict(context),
            **shard_inputs,
            metadata={"call_link_label": "table"},  # type: ignore[arg-type]
        )
        table, summary = cast(orm.SinglefileData, result["table"]), cast(orm.Dict, result["summary"])
        self.out("table", table)
        self.out("summary", summary)
        self.out("model", model)
        self._add_to_group(group, list(summary["selected_pks"]))
        self.ctx.failed = failed
        self.ctx.verify = self._verification_candidates(summary) if "verify" in self.inputs else {}

    def _add_to_group(self, group: orm.Group, pks: list[int]) -> None:
        for start in range(0, len(pks), 1000):
            query = orm.QueryBuilder().append(
                orm.StructureData, filters={"id": {"in": pks[start : start + 1000]}}
            )
            group.add_nodes(cast("list[orm.Node]", query.all(flat=True)))

    def _verification_candidates(self, summary: orm.Dict) -> dict[str, int]:
        """The best ``k`` selected structures and the ``k`` predicted ones of largest spread (of the
        criterion's target, compared as the criterion compares) not among them: link label -> pk."""
        default = self.ctx.criterion.top_k or VERIFY_COUNT
        k = self.inputs.verify_count.value if "verify_count" in self.inputs else default
        chosen = {f"top{rank}_pk{pk}": pk for rank, pk in enumerate(summary["selected_pks"][:k], start=1)}
        others = [pk for pk in summary["most_uncertain_pks"] if pk not in chosen.values()]
        chosen.update({f"uncertain{n}_pk{pk}": pk for n, pk in enumerate(others[:k], start=1)})
        return chosen

    def should_verify(self) -> bool:
        return bool(self.ctx.verify)

    def run_verification(self) -> None:
        inputs = self.exposed_inputs(PhononComparisonWorkChain, namespace="verify")
        structures = {label: orm.load_node(pk) for label, pk in self.ctx.verify.items()}
        self.report(f"verifying {', '.join(self.ctx.verify)} with cgcnn.phonon_comparison")
        metadata = {**dict(inputs.get("metadata", {})), "call_link_label": "verification"}
        inputs.update(structures=structures, model=self.ctx.model, metadata=metadata)
        node = self.submit(PhononComparisonWorkChain, **inputs)
        self.to_context(verification=node)

    def inspect_verification(self) -> ExitCode | None:
        node = self.ctx.verification
        self.out_many(self.exposed_outputs(node, PhononComparisonWorkChain, namespace="verification"))
        if not node.is_finished_ok:
            self.ctx.verification_failed = [f"{node.process_label}<{node.pk}>", _why(node)]
        return None

    def finalize(self) -> ExitCode | None:
        failed = self.ctx.failed
        shards = [s for s in self.ctx.shards if s["dataset"] is not None]
        if not shards:
            return self.exit_codes.ERROR_NO_VALID_STRUCTURE  # type: ignore[no-any-return]
        if failed and len(failed) == len(shards):
            return self.exit_codes.ERROR_ALL_SHARDS_FAILED  # type: ignore[no-any-return]
        if failed:
            return self.exit_codes.ERROR_SHARDS_FAILED.format(  # type: ignore[no-any-return]
                failed=str(len(failed)), shards=str(len(self.ctx.shards)), which=", ".join(sorted(failed))
            )
        if "verification_failed" in self.ctx:
            process, reason = self.ctx.verification_failed
            return self.exit_codes.ERROR_VERIFICATION_FAILED.format(process=process, reason=reason)  # type: ignore[no-any-return]
        return None


def _let_start(node: orm.CalcJobNode, limit: float = START_WAIT) -> None:
    """Hands the event loop to the job just submitted until the scheduler has it (or ``limit`` seconds
    pass), so that it runs while the next shard is read: a work chain step holds the loop of its
    process (and of every process in the same interpreter or daemon worker) until it returns. Through
    plumpy's portal for steps (aiida-core >= 2.8); without one, nothing happens."""
    try:
        from plumpy import has_portal, sync_await
    except ImportError:  # pragma: no cover  (plumpy before the greenback bridge)
        return
    if not has_portal():
        return

    async def started() -> None:
        deadline = time.monotonic() + limit
        while node.get_job_id() is None and not node.is_terminated and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    sync_await(started())


def _why(node: orm.ProcessNode) -> str:
    """A failed process in one line: its name, pk, exit status and message."""
    if node.is_excepted:
        last = node.exception.strip().splitlines()[-1] if node.exception else ""
        return f"{node.process_label}<{node.pk}> excepted: {last}"
    message = (node.exit_message or "").strip().splitlines()
    return f"{node.process_label}<{node.pk}> exit status {node.exit_status}" + (
        f": {message[0]}" if message else ""
    )


def _model_label(model: ModelData | EnsembleData) -> str:
    return model.model_label if isinstance(model, EnsembleData) else f"ModelData<{model.pk}> {model.summary}"
