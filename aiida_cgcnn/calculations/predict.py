"""``cgcnn.predict``: predictions for a large dataset on a (remote, GPU) computer."""

from __future__ import annotations

import re
from typing import Any

from aiida import orm
from aiida.common import datastructures
from aiida.common.folders import Folder
from aiida.engine import CalcJob, CalcJobProcessSpec

from ..data.dataset import CrystalDatasetData
from ..data.ensemble import EnsembleData
from ..data.integrity import validate_unaltered, write_verified
from ..data.model import ModelData
from .options import define_command_exit_codes, set_option_defaults
from .remote_cache import (
    CACHE_LINK,
    REUSE_OPTION,
    cache_link_script,
    cached_dataset_path,
    define_reuse_option,
    hashed_metadata,
    remote_dataset_available,
)

__all__ = ["ENSEMBLE_FOLDER", "PredictCalculation"]

#: Where an ensemble's card and members go in the remote working directory.
ENSEMBLE_FOLDER = "ensemble"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _validate_device(value: orm.Str | None, _ctx: Any) -> str | None:
    if value is not None and not _DEVICE.fullmatch(value.value):
        return f"device: {value.value!r} is not auto, cpu, cuda or cuda:N (N the GPU index)"
    return None


def _validate_workers(value: orm.Int | None, _ctx: Any) -> str | None:
    if value is not None and value.value < 1:
        return (
            f"workers: {value.value} processes; give a positive number (1 builds graphs in the job's process)"
        )
    return None


def _validate_batch_size(value: orm.Int | None, _ctx: Any) -> str | None:
    if value is not None and value.value < 1:
        return f"batch_size: {value.value} structures per batch; give a positive number"
    return None


class PredictCalculation(CalcJob):
    """Run ``aiida-cgcnn predict`` with a model on a dataset; invalid structures are skipped and listed.

    Outputs ``predictions`` (``ArrayData`` with arrays ``ids`` and ``values``; attributes
    ``target_names``, ``units``, ``task``), ``skipped`` (ids and reasons) and, for site-pooled
    models, ``site_contributions`` (CSV).

    With an ``EnsembleData`` its card and members are copied to the folder ``ensemble`` and the
    command runs ``--model ensemble``: ``values`` are the members' mean and ``predictions`` also has
    ``std`` (calibrated), ``values_per_atom``/``std_per_atom`` (NaN for intensive targets),
    ``basis_atoms`` and ``out_of_domain`` (bool), with attributes ``basis`` and ``model`` (the
    ensemble's label); ``out_of_domain`` (id -> reason, the flagged structures only) and
    ``n_out_of_domain`` are outputs of their own.
    """

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input(
            "model",
            valid_type=(ModelData, EnsembleData),
            validator=validate_unaltered,
            help="A trained model, or a pretrained ensemble (mean, calibrated std, out-of-domain flags).",
        )
        spec.input(
            "dataset",
            valid_type=CrystalDatasetData,
            validator=validate_unaltered,
            help="The structures to predict.",
        )
        spec.input(
            "device",
            valid_type=orm.Str,
            default=lambda: orm.Str("auto"),
            serializer=orm.to_aiida_type,
            validator=_validate_device,
            help="auto (GPU when the node has one), cpu, cuda or cuda:N.",
        )
        spec.input(
            "batch_size",
            valid_type=orm.Int,
            default=lambda: orm.Int(256),
            serializer=orm.to_aiida_type,
            validator=_validate_batch_size,
            help="Structures per batch.",
        )
        spec.input(
            "workers",
            valid_type=orm.Int,
            required=False,
            serializer=orm.to_aiida_type,
            validator=_validate_workers,
            help="Processes that build the graphs and descriptors [the CPUs the job asks for: "
            "num_mpiprocs_per_machine x num_cores_per_mpiproc of metadata.options.resources].",
        )
        define_reuse_option(spec)
        set_option_defaults(
            spec,
            parser_name="cgcnn.predict",
            resources={"num_machines": 1, "num_mpiprocs_per_machine": 1},
            withmpi=False,
        )
        spec.output(
            "predictions", valid_type=orm.ArrayData, help="ids and predicted values, in dataset order."
        )
        spec.output(
            "skipped", valid_type=orm.Dict, help="Structures that could not be predicted: id -> reason."
        )
        spec.output(
            "site_contributions",
            valid_type=orm.SinglefileData,
            required=False,
            help="Per-site contributions (sum/site pooling).",
        )
        spec.output(
            "out_of_domain",
            valid_type=orm.Dict,
            required=False,
            help="Ensembles: structures outside the training domain, id -> reason.",
        )
        spec.output(
            "n_out_of_domain",
            valid_type=orm.Int,
            required=False,
            help="Ensembles: how many structures lie outside the training domain.",
        )
        define_command_exit_codes(spec)  # the same codes as cgcnn.train

    def _setup_metadata(self, metadata: dict[str, Any]) -> None:
        super()._setup_metadata(hashed_metadata(metadata))

    def _workers(self) -> int:
        """Graph-building processes: the input, else the CPUs the job asked the scheduler for (the
        command's own default counts the node's CPUs, more than a shared node gives one job)."""
        if "workers" in self.inputs:
            return int(self.inputs.workers.value)
        resources = dict(self.node.get_option("resources") or {})
        mpiprocs = resources.get("num_mpiprocs_per_machine") or resources.get("tot_num_mpiprocs") or 1
        return max(1, int(mpiprocs) * int(resources.get("num_cores_per_mpiproc") or 1))

    def prepare_for_submission(self, folder: Folder) -> datastructures.CalcInfo:
        dataset = self.inputs.dataset
        computer = self.inputs.code.computer
        model = self.inputs.model
        # checked again here, at upload, and written as checked (not copied from the repository later)
        if isinstance(model, EnsembleData):
            files = {f"{ENSEMBLE_FOLDER}/{name}": content for name, content in model.verified_files().items()}
        else:
            files = {"model.pt": model.verified_content()}
        if self.inputs.metadata.options.get(REUSE_OPTION, True) and remote_dataset_available(
            dataset, computer
        ):
            data_path = cached_dataset_path(dataset)
        else:
            files["dataset.npz"] = dataset.verified_content()
            data_path = "dataset.npz"
        write_verified(folder, files)
        folder.get_subfolder("run", create=True)
        workers = ["--workers", str(self._workers())]
        code_info = datastructures.CodeInfo()
        code_info.code_uuid = self.inputs.code.uuid
        if isinstance(model, EnsembleData):
            # the pretrained path reads the folder's card; it neither takes --device nor keeps a
            # dataset copy (remote_cache does not count its success as one)
            code_info.cmdline_params = [
                "predict",
                "--model",
                ENSEMBLE_FOLDER,
                data_path,
                "--output",
                "run/predictions.csv",
                "--skip-invalid",
                "--batch-size",
                str(self.inputs.batch_size.value),
                *workers,
            ]
        else:
            code_info.cmdline_params = [
                "predict",
                "model.pt",
                data_path,
                "--output",
                "run/predictions.csv",
                "--sites",
                "run/sites.csv",
                "--skip-invalid",
                "--device",
                self.inputs.device.value,
                "--batch-size",
                str(self.inputs.batch_size.value),
                "--store-dataset",
                f"{CACHE_LINK}/datasets",
                *workers,
            ]
        code_info.stdout_name = "aiida.out"
        code_info.stderr_name = "aiida.err"
        calc_info = datastructures.CalcInfo()
        calc_info.codes_info = [code_info]
        calc_info.prepend_text = cache_link_script(computer)
        calc_info.local_copy_list = []  # the checked files are written into the folder instead
        calc_info.retrieve_list = [
            "aiida.out",
            "aiida.err",
            "run/predictions.csv",
            "run/sites.csv",
            "run/status.json",
        ]
        return calc_info
