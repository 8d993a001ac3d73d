"""``cgcnn.train``: train a model on a (remote, GPU) computer by running ``aiida-cgcnn train`` there."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..data.dataset import CrystalDatasetData
from ..data.model import ModelData
from .parameters import validate_train_parameters

__all__ = ["TrainCalculation"]

#: Shared per-computer cache, relative to a calculation's folder (``workdir/xx/yy/rest-of-uuid``),
#: so a dataset uploaded once and its graphs are reused by later calculations on that computer.
REMOTE_CACHE = "../../../cgcnn-cache"
OUTPUT_DIR = "run"


def _validate_parameters(value: orm.Dict, _ctx) -> str | None:
    return validate_train_parameters(value.get_dict()) if value is not None else None


def _validate_inputs(inputs, _ctx) -> str | None:
    if "parent_folder" in inputs and "model" in inputs:
        return "give either `parent_folder` (resume) or `model` (fine-tune), not both"
    return None


def remote_dataset_available(dataset: CrystalDatasetData, computer: orm.Computer) -> bool:
    """Whether a finished calculation on ``computer`` already left this dataset file in its cache."""
    from .predict import PredictCalculation

    query = orm.QueryBuilder()
    query.append(CrystalDatasetData, filters={"attributes.sha256": dataset.sha256}, tag="dataset")
    query.append(
        (TrainCalculation, PredictCalculation),
        with_incoming="dataset",
        filters={
            "dbcomputer_id": computer.pk,
            "attributes.exit_status": {"in": [0, 400]},
            "extras.cgcnn_dataset_cached": True,
        },
        project="id",
    )
    return query.count() > 0


class TrainCalculation(CalcJob):
    """Train a crystal graph network with ``aiida-cgcnn train`` on the code's computer.

    The time budget is ``metadata.options.max_wallclock_seconds`` (when set): the command stops
    cleanly before it with a checkpoint, and the calculation exits with ``STOPPED_BEFORE_WALLTIME``
    so that :class:`~aiida_cgcnn.workflows.train.TrainWorkChain` resumes it.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "dataset",
            valid_type=CrystalDatasetData,
            help="The training data: structures, targets and units (portable dataset file).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            serializer=orm.to_aiida_type,
            help="Sections `model`, `train`, `graph` and the flag `skip_invalid`; see the docs.",
        )
        spec.input(
            "parent_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="Folder of an earlier training on the same computer to resume from (its last.pt).",
        )
        spec.input(
            "model",
            valid_type=ModelData,
            required=False,
            help="A trained model whose weights start this training (fine-tuning).",
        )
        spec.input(
            "reuse_remote_dataset",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            serializer=orm.to_aiida_type,
            help="Use the copy of the dataset left on the computer by an earlier calculation.",
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs["metadata"]["options"]["parser_name"].default = "cgcnn.train"
        spec.inputs["metadata"]["options"]["resources"].default = {
            "num_machines": 1,
            "num_mpiprocs_per_machine": 1,
        }
        spec.inputs["metadata"]["options"]["withmpi"].default = False

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

        spec.exit_code(300, "ERROR_MISSING_OUTPUT", message="The command left no {filename}.")
        spec.exit_code(310, "ERROR_INVALID_DATASET", message="Invalid input: {message}")
        spec.exit_code(
            311,
            "ERROR_REMOTE_DATASET_MISSING",
            message="The dataset expected in the computer's cache is gone: {message}",
        )
        spec.exit_code(320, "ERROR_LOSS_DIVERGED", message="The training loss diverged: {message}")
        spec.exit_code(330, "ERROR_OUT_OF_MEMORY", message="Out of memory: {message}")
        spec.exit_code(350, "ERROR_COMMAND_FAILED", message="The command failed: {message}")
        spec.exit_code(
            400,
            "STOPPED_BEFORE_WALLTIME",
            message="Stopped before the walltime with a checkpoint saved; resume from it.",
        )

    def prepare_for_submission(self, folder):
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        parameters = json.loads(json.dumps(parameters))
        train = parameters.setdefault("train", {})
        walltime = self.inputs.metadata.options.get("max_wallclock_seconds")
        if walltime and "time_budget" not in train:
            train["time_budget"] = float(walltime)
            train.setdefault("time_margin", float(min(300.0, max(20.0, 0.05 * walltime))))
        nproc = int(parameters.pop("nproc_per_node", 1))
        with folder.open("config.json", "w") as handle:
            json.dump(parameters, handle, indent=2)

        dataset = self.inputs.dataset
        local_copy_list = []
        remote_copy_list = []
        cached_dataset = f"{REMOTE_CACHE}/datasets/{dataset.sha256}.npz"
        computer = self.inputs.code.computer
        if self.inputs.reuse_remote_dataset.value and remote_dataset_available(dataset, computer):
            data_path = cached_dataset
        else:
            local_copy_list.append((dataset.uuid, dataset.filename, "dataset.npz"))
            data_path = "dataset.npz"
        arguments = [
            "train",
            data_path,
            "--output-dir",
            OUTPUT_DIR,
            "--config",
            "config.json",
            "--cache-dir",
            f"{REMOTE_CACHE}/graphs",
            "--store-dataset",
            f"{REMOTE_CACHE}/datasets",
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
            local_copy_list.append((self.inputs.model.uuid, self.inputs.model.filename, "init.pt"))
            arguments += ["--init-from", "init.pt"]

        code_info = datastructures.CodeInfo()
        code_info.code_uuid = self.inputs.code.uuid
        code_info.cmdline_params = arguments
        code_info.stdout_name = "aiida.out"
        code_info.stderr_name = "aiida.err"

        calc_info = datastructures.CalcInfo()
        calc_info.codes_info = [code_info]
        calc_info.local_copy_list = local_copy_list
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
