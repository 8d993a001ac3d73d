"""``cgcnn.train`` restart work chain: resumes after the walltime, shrinks batches after running out of
memory, lowers the learning rate after a diverged loss."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from ..calculations.train import TrainCalculation

__all__ = ["TrainWorkChain"]


class TrainWorkChain(BaseRestartWorkChain):
    """Run :class:`~aiida_cgcnn.calculations.train.TrainCalculation` until it completes."""

    _process_class = TrainCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(TrainCalculation, namespace="train")
        spec.expose_outputs(TrainCalculation)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.exit_code(
            410, "ERROR_UNRECOVERABLE_FAILURE", message="The training failed in a way no handler fixes."
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainCalculation, "train"))
        parameters = self.ctx.inputs.get("parameters")
        self.ctx.parameters = parameters.get_dict() if parameters is not None else {}

    def _set_train(self, key: str, value) -> None:
        self.ctx.parameters.setdefault("train", {})[key] = value
        self.ctx.inputs.parameters = orm.Dict(self.ctx.parameters)

    @process_handler(priority=600, exit_codes=TrainCalculation.exit_codes.STOPPED_BEFORE_WALLTIME)
    def handle_walltime(self, node):
        """Resume from the checkpoint the stopped calculation left in its remote folder."""
        self.ctx.inputs.parent_folder = node.outputs.remote_folder
        self.ctx.inputs.pop("model", None)  # resuming continues the run; fine-tuning weights are in it
        self.report(
            f"{node.process_label}<{node.pk}> stopped before the walltime: resuming from its checkpoint"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=TrainCalculation.exit_codes.ERROR_OUT_OF_MEMORY)
    def handle_out_of_memory(self, node):
        """Halve the batch size and start again."""
        batch_size = int(self.ctx.parameters.get("train", {}).get("batch_size", 64))
        if batch_size <= 1:
            self.report("out of memory with a batch size of 1: nothing left to halve")
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_UNRECOVERABLE_FAILURE)
        self._set_train("batch_size", max(batch_size // 2, 1))
        self.ctx.inputs.pop("parent_folder", None)
        self.report(
            f"{node.process_label}<{node.pk}> ran out of memory: batch size {batch_size} -> "
            f"{max(batch_size // 2, 1)}"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=TrainCalculation.exit_codes.ERROR_LOSS_DIVERGED)
    def handle_diverged(self, node):
        """Lower the learning rate tenfold and start again."""
        lr = float(self.ctx.parameters.get("train", {}).get("lr", 2e-3))
        self._set_train("lr", lr / 10)
        self.ctx.inputs.pop("parent_folder", None)
        self.report(f"{node.process_label}<{node.pk}> diverged: learning rate {lr:g} -> {lr / 10:g}")
        return ProcessHandlerReport(do_break=True)
