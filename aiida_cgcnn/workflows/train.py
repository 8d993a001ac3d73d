"""``cgcnn.train`` restart work chain: resumes after the walltime or a job cancelled by the scheduler,
shrinks batches after running out of memory, lowers the learning rate after a diverged loss, re-uploads
a dataset gone from the cache, and stops at once on a full disk."""

from __future__ import annotations

from typing import Any, cast

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_
from aiida.engine.processes.calcjobs import CalcJob
from aiida.engine.processes.workchains.workchain import WorkChainSpec

from ..calculations.remote_cache import REUSE_OPTION
from ..calculations.train import OUTPUT_DIR, TrainCalculation, time_budget
from ..training.trainer import TrainConfig
from .protocols import ProtocolMixin

__all__ = ["TrainWorkChain", "checkpoint_left"]

#: Inputs that set where a training starts: fine-tuning weights or a checkpoint to resume.
_START = ("model", "parent_folder")


def checkpoint_left(
    remote_folder: orm.RemoteData | None, retrieved: orm.FolderData | None
) -> tuple[bool, str]:
    """Whether a stopped training left ``run/last.pt`` on the computer, and a note when that had to be
    judged without the computer: the command writes ``learning_curve.csv`` right after ``last.pt`` at
    every epoch, so a row in the retrieved copy means a checkpoint. A transport that fails (a dropped
    SSH connection, a refused login) must not turn a resumable training into one started again."""
    if remote_folder is None:
        return False, ""
    try:
        return "last.pt" in remote_folder.listdir(OUTPUT_DIR), ""
    except Exception as error:
        if isinstance(error, OSError) and (error.errno in (2, 20) or "does not exist" in str(error)):
            return False, ""  # RemoteData.listdir's words for a folder that is not there: no run/ yet
        epochs = 0
        if retrieved is not None and "learning_curve.csv" in retrieved.base.repository.list_object_names():
            text = retrieved.base.repository.get_object_content("learning_curve.csv", mode="r")
            epochs = max(0, len([line for line in text.splitlines() if line.strip()]) - 1)
        return epochs > 0, (
            f"could not list its remote folder ({type(error).__name__}: {error}); its retrieved learning "
            f"curve has {epochs} epochs, so {'a' if epochs else 'no'} checkpoint was saved"
        )


class TrainWorkChain(ProtocolMixin, BaseRestartWorkChain):
    """Run :class:`~aiida_cgcnn.calculations.train.TrainCalculation` until it completes.

    The inputs the training started from (``model`` to fine-tune, or ``parent_folder``) are kept: a
    handler that starts again from scratch starts from them, one that resumes uses the last checkpoint.
    """

    _process_class = TrainCalculation

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace="train")
        spec.expose_outputs(TrainCalculation)
        # aiida types the outline's steps as methods of WorkChain itself, not of a subclass
        steps: list[Any] = [cls.run_process, cls.inspect_process]
        loop = while_(cast(Any, cls.should_run_process))(*steps)
        spec.outline(cast(Any, cls.setup), loop, cast(Any, cls.results))
        spec.exit_code(
            330,
            "ERROR_DISK_FULL",
            message="The disk of the remote work directory is full; no restart can help: {message}",
        )
        spec.exit_code(
            403, "ERROR_UNRECOVERABLE_FAILURE", message="The training failed in a way no handler fixes."
        )

    def setup(self) -> None:
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainCalculation, "train"))
        parameters = self.ctx.inputs.get("parameters")
        self.ctx.parameters = parameters.get_dict() if parameters is not None else {}
        self.ctx.start = {key: self.ctx.inputs[key] for key in _START if key in self.ctx.inputs}
        self.ctx.reuse_remote_dataset = self._options().get(REUSE_OPTION, True)

    def _options(self) -> dict[str, Any]:
        return dict(self.ctx.inputs.get("metadata", {}).get("options", {}))

    def _set_option(self, name: str, value: Any) -> None:
        metadata = dict(self.ctx.inputs.get("metadata", {}))
        metadata["options"] = {**self._options(), name: value}
        self.ctx.inputs.metadata = metadata

    def run_process(self) -> Any:
        result = super().run_process()
        # a re-upload after ERROR_REMOTE_DATASET_MISSING is for that one calculation: it caches the file again
        self._set_option(REUSE_OPTION, self.ctx.reuse_remote_dataset)
        return result

    def _set_train(self, key: str, value: Any) -> None:
        self.ctx.parameters.setdefault("train", {})[key] = value
        self.ctx.inputs.parameters = orm.Dict(self.ctx.parameters)

    def _train_setting(self, key: str) -> Any:
        return self.ctx.parameters.get("train", {}).get(key, getattr(TrainConfig(), key))

    def _resume(self, node: orm.CalcJobNode) -> None:
        """Continue from the checkpoint in ``node``'s folder (the fine-tuning weights are in it)."""
        for key in _START:
            self.ctx.inputs.pop(key, None)
        self.ctx.inputs.parent_folder = node.outputs.remote_folder

    def _start_again(self) -> None:
        """Start from where the training started: the fine-tuning weights or the first checkpoint."""
        for key in _START:
            self.ctx.inputs.pop(key, None)
        self.ctx.inputs.update(self.ctx.start)

    def _resume_or_start_again(self, node: orm.CalcJobNode) -> str:
        """Resume from ``node``'s last checkpoint if it left one, else start again; says which."""
        outputs = node.outputs
        checkpoint, note = checkpoint_left(
            getattr(outputs, "remote_folder", None), getattr(outputs, "retrieved", None)
        )
        if note:
            self.report(f"{node.process_label}<{node.pk}>: {note}")
        if checkpoint:
            self._resume(node)
            return "resuming from its last checkpoint"
        self._start_again()
        return "no checkpoint yet: starting again"

    @process_handler(priority=600, exit_codes=TrainCalculation.exit_codes.STOPPED_BEFORE_WALLTIME)
    def handle_walltime(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Resume from the checkpoint the stopped calculation left in its remote folder."""
        self._resume(node)
        self.report(
            f"{node.process_label}<{node.pk}> stopped before the walltime: resuming from its checkpoint"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=590, exit_codes=CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME)
    def handle_scheduler_walltime(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Killed by the scheduler at the walltime: the walltime becomes the time budget, with twice the
        margin, and the training resumes from its last checkpoint (or starts again without one)."""
        train = self.ctx.parameters.setdefault("train", {})
        train.pop("time_budget", None)
        _, margin = time_budget(self.ctx.parameters, self._options().get("max_wallclock_seconds"))
        if margin:
            train["time_margin"] = 2 * margin
        self.ctx.inputs.parameters = orm.Dict(self.ctx.parameters)
        how = self._resume_or_start_again(node)
        self.report(
            f"{node.process_label}<{node.pk}> killed at the walltime: {how}; "
            f"time margin {train.get('time_margin')} s"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=580, exit_codes=CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY)
    def handle_scheduler_out_of_memory(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Killed by the scheduler for its memory: resume from the last checkpoint, or start again."""
        how = self._resume_or_start_again(node)
        self.report(f"{node.process_label}<{node.pk}> killed by the scheduler for its memory: {how}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=570, exit_codes=TrainCalculation.exit_codes.ERROR_SCHEDULER_JOB_CANCELLED)
    def handle_scheduler_cancelled(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Cancelled by the scheduler (scancel, preemption): as after a walltime kill, resume from the
        last checkpoint (written whole every epoch), or start again without one."""
        how = self._resume_or_start_again(node)
        self.report(f"{node.process_label}<{node.pk}> cancelled by the scheduler: {how}")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=560, exit_codes=TrainCalculation.exit_codes.ERROR_DISK_FULL)
    def handle_disk_full(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """A full disk does not empty itself: stop at once (a restart would fill it again), saying what
        to do; the checkpoints on the computer are intact."""
        self.report(
            f"{node.process_label}<{node.pk}> found the disk of its work directory full: not restarting; "
            f"free space, then resume from its remote_folder (parent_folder)"
        )
        exit_code = self.exit_codes.ERROR_DISK_FULL.format(message=node.exit_message or "")
        return ProcessHandlerReport(do_break=True, exit_code=exit_code)

    @process_handler(priority=550, exit_codes=TrainCalculation.exit_codes.ERROR_REMOTE_DATASET_MISSING)
    def handle_remote_dataset_missing(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """The cached dataset file is gone from the computer: upload it with the next calculation."""
        self._set_option(REUSE_OPTION, False)
        self.report(f"{node.process_label}<{node.pk}> found no cached dataset: uploading it again")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=TrainCalculation.exit_codes.ERROR_OUT_OF_MEMORY)
    def handle_out_of_memory(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Halve the batch size and start again."""
        batch_size = int(self._train_setting("batch_size"))
        if batch_size <= 1:
            self.report("out of memory with a batch size of 1: nothing left to halve")
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        self._set_train("batch_size", max(batch_size // 2, 1))
        self._start_again()
        self.report(
            f"{node.process_label}<{node.pk}> ran out of memory: batch size {batch_size} -> "
            f"{max(batch_size // 2, 1)}"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=TrainCalculation.exit_codes.ERROR_LOSS_DIVERGED)
    def handle_diverged(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Lower the learning rate tenfold and start again."""
        lr = float(self._train_setting("lr"))
        self._set_train("lr", lr / 10)
        self._start_again()
        self.report(f"{node.process_label}<{node.pk}> diverged: learning rate {lr:g} -> {lr / 10:g}")
        return ProcessHandlerReport(do_break=True)
