"""``cgcnn.train``: train a model on a (remote, GPU) computer by running ``aiida-cgcnn train`` there."""

from __future__ import annotations

import json
from typing import Any

from aiida import orm
from aiida.common import datastructures
from aiida.common.folders import Folder
from aiida.engine import CalcJob, CalcJobProcessSpec

from ..data.dataset import CrystalDatasetData
from ..data.integrity import validate_unaltered, write_verified
from ..data.model import ModelData
from .options import define_command_exit_codes, set_option_defaults
from .parameters import PARAMETERS_HELP, validate_train_parameters
from .remote_cache import (
    CACHE_LINK,
    REUSE_OPTION,
    cache_link_script,
    cached_dataset_path,
    define_reuse_option,
    hashed_metadata,
    remote_dataset_available,
)

__all__ = ["OUTPUT_DIR", "TIME_BUDGET_ATTRIBUTE", "TrainCalculation", "time_budget"]

OUTPUT_DIR = "run"
#: Node attribute with the command's time budget (s): part of the hash, unlike ``max_wallclock_seconds``.
TIME_BUDGET_ATTRIBUTE = "time_budget"


def _validate_parameters(value: orm.Dict | None, _ctx: Any) -> str | None:
    return validate_train_parameters(value.get_dict()) if value is not None else None


def _validate_inputs(inputs: dict[str, Any], _ctx: Any) -> str | None:
    if "parent_folder" in inputs and "model" in inputs:
        return "give either `parent_folder` (resume) or `model` (fine-tune), not both"
    parent, code = inputs.get("parent_folder"), inputs.get("code")
    if parent is not None and code is not None and code.computer is not None:
        if parent.computer.uuid != code.computer.uuid:
            return (
                f"`parent_folder` is on computer {parent.computer.label!r} but the code runs on "
                f"{code.computer.label!r}: resume on the computer that holds the checkpoint"
            )
    return None


def time_budget(parameters: dict[str, Any], walltime: float | None) -> tuple[float | None, float | None]:
    """The command's time budget and margin (s): ``parameters.train``'s, else from the walltime (5 %
    margin, at least 20 s, at most 300 s); (None, None) without either."""
    train = parameters.get("train", {})
    if train.get("time_budget") is not None:
        return float(train["time_budget"]), train.get("time_margin")
    if walltime:
        return float(walltime), float(train.get("time_margin", min(300.0, max(20.0, 0.05 * walltime))))
    return None, None


class TrainCalculation(CalcJob):
    """Train a crystal graph network with ``aiida-cgcnn train`` on the code's computer.

    The time budget is ``metadata.options.max_wallclock_seconds`` (when set): the command stops
    cleanly before it with a checkpoint, and the calculation exits with ``STOPPED_BEFORE_WALLTIME``
    so that :class:`~aiida_cgcnn.workflows.train.TrainWorkChain` resumes it. Every exit code but 0
    invalidates the cache, and the time budget is part of the hash (node attribute ``time_budget``).
    """

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input(
            "dataset",
            valid_type=CrystalDatasetData,
            validator=validate_unaltered,
            help="The training data: structures, targets and units (portable dataset file).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            serializer=orm.to_aiida_type,
            help=PARAMETERS_HELP,
        )
        spec.input(
            "parent_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="Folder of an earlier training on the code's computer to resume from (its last.pt).",
        )
        spec.input(
            "model",
            valid_type=ModelData,
            required=False,
            validator=validate_unaltered,
            help="A trained model whose weights start this training (fine-tuning).",
        )
        define_reuse_option(spec)
        spec.inputs.validator = _validate_inputs
        set_option_defaults(
            spec,
            parser_name="cgcnn.train",
            resources={"num_machines": 1, "num_mpiprocs_per_machine": 1},
            withmpi=False,
        )

        spec.output("model", valid_type=ModelData, help="The best checkpoint on the validation set.")
        spec.output("metrics", valid_type=orm.Dict, help="Train/val/test metrics and why training stopped.")
        spec.output("learning_curve", valid_type=orm.ArrayData, help="Per-epoch losses, metrics, lr.")
        spec.output(
            "test_predictions",
            valid_type=orm.SinglefileData,
            required=False,
            help="CSV of the test split: id, true and predicted values.",
        )
        spec.default_output_node = "metrics"

        define_command_exit_codes(spec)  # 170, 300, 310, 320, 330, 350, 410, 430
        spec.exit_code(
            400,
            "STOPPED_BEFORE_WALLTIME",
            invalidates_cache=True,
            message="Stopped before the walltime with a checkpoint saved; resume from it.",
        )
        spec.exit_code(
            420,
            "ERROR_LOSS_DIVERGED",
            invalidates_cache=True,
            message="The training loss diverged: {message}",
        )

    def _parameters(self) -> dict[str, Any]:
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        return dict(json.loads(json.dumps(parameters)))

    def _setup_metadata(self, metadata: dict[str, Any]) -> None:
        # aiida-core leaves max_wallclock_seconds out of the hash; here it sets the time budget, which
        # changes the result, so the budget goes into the hash as an attribute of its own
        super()._setup_metadata(hashed_metadata(metadata))
        budget, _ = time_budget(self._parameters(), self.inputs.metadata.options.get("max_wallclock_seconds"))
        if budget is not None:
            self.node.base.attributes.set(TIME_BUDGET_ATTRIBUTE, budget)

    def prepare_for_submission(self, folder: Folder) -> datastructures.CalcInfo:
        parameters = self._parameters()
        budget, margin = time_budget(parameters, self.inputs.metadata.options.get("max_wallclock_seconds"))
        if budget is not None:
            train = parameters.setdefault("train", {})
            train["time_budget"] = budget
            if margin is not None:
                train["time_margin"] = margin
        nproc = int(parameters.pop("nproc_per_node", 1))
        with folder.open("config.json", "w") as handle:
            json.dump(parameters, handle, indent=2)

        dataset = self.inputs.dataset
        computer = self.inputs.code.computer
        remote_copy_list = []
        reuse = self.inputs.metadata.options.get(REUSE_OPTION, True)
        # checked again here, at upload, and written as checked (not copied from the repository later)
        files: dict[str, bytes] = {}
        if reuse and remote_dataset_available(dataset, computer):
            data_path = cached_dataset_path(dataset)
        else:
            files["dataset.npz"] = dataset.verified_content()
            data_path = "dataset.npz"
        arguments = [
            "train",
            data_path,
            "--output-dir",
            OUTPUT_DIR,
            "--config",
            "config.json",
            "--cache-dir",
            f"{CACHE_LINK}/graphs",
            "--store-dataset",
            f"{CACHE_LINK}/datasets",
            "--no-progress",
        ]
        if nproc > 1:
            arguments += ["--nproc-per-node", str(nproc)]
        if "parent_folder" in self.inputs:
            parent = self.inputs.parent_folder
            remote_copy_list += [
                (computer.uuid, f"{parent.get_remote_path()}/{OUTPUT_DIR}/last.pt", "parent_last.pt"),
                (computer.uuid, f"{parent.get_remote_path()}/{OUTPUT_DIR}/best.pt", f"{OUTPUT_DIR}/best.pt"),
            ]
            folder.get_subfolder(OUTPUT_DIR, create=True)
            arguments += ["--resume", "parent_last.pt"]
        if "model" in self.inputs:
            files["init.pt"] = self.inputs.model.verified_content()
            arguments += ["--init-from", "init.pt"]
        write_verified(folder, files)

        code_info = datastructures.CodeInfo()
        code_info.code_uuid = self.inputs.code.uuid
        code_info.cmdline_params = arguments
        code_info.stdout_name = "aiida.out"
        code_info.stderr_name = "aiida.err"

        calc_info = datastructures.CalcInfo()
        calc_info.codes_info = [code_info]
        calc_info.prepend_text = cache_link_script(computer)
        calc_info.local_copy_list = []  # the checked files are written into the folder instead
        calc_info.remote_copy_list = remote_copy_list
        calc_info.retrieve_list = [
            "aiida.out",
            "aiida.err",
            f"{OUTPUT_DIR}/best.pt",
            f"{OUTPUT_DIR}/metrics.json",
            f"{OUTPUT_DIR}/learning_curve.csv",
            f"{OUTPUT_DIR}/test_predictions.csv",
            f"{OUTPUT_DIR}/status.json",
            f"{OUTPUT_DIR}/skipped.txt",
        ]
        return calc_info
