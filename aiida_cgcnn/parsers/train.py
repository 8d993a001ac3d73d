"""Parser of ``cgcnn.train``: the command's ``status.json`` decides the exit code; outputs from the files."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..data.model import ModelData

__all__ = ["TrainParser", "read_status"]

# retrieved files land at the root of ``retrieved`` (AiiDA keeps base names of retrieve_list entries)
_STATUS_TO_EXIT = {
    "invalid_input": "ERROR_INVALID_DATASET",
    "missing_input": "ERROR_REMOTE_DATASET_MISSING",
    "diverged": "ERROR_LOSS_DIVERGED",
    "out_of_memory": "ERROR_OUT_OF_MEMORY",
    "error": "ERROR_COMMAND_FAILED",
}


def read_status(retrieved: orm.FolderData) -> dict | None:
    try:
        return json.loads(retrieved.get_object_content("status.json"))
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return None


def learning_curve_array(text: str) -> orm.ArrayData:
    rows = list(csv.DictReader(io.StringIO(text)))
    array = orm.ArrayData()
    for key in rows[0] if rows else []:
        array.set_array(key, np.array([float(r[key]) if r[key] != "" else np.nan for r in rows]))
    return array


class TrainParser(Parser):
    """Turns the retrieved files into ``model``, ``metrics``, ``learning_curve``, ``test_predictions``."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        exit_codes = self.node.process_class.exit_codes
        status = read_status(retrieved)
        if status is None:
            # killed before it could write a status: the scheduler's verdict (e.g. walltime) comes first
            scheduler_code = self.node.exit_status
            if scheduler_code:
                return ExitCode(scheduler_code, self.node.exit_message)
            stderr = _tail(retrieved, "aiida.err")
            if stderr:
                return exit_codes.ERROR_COMMAND_FAILED.format(message=stderr)
            return exit_codes.ERROR_MISSING_OUTPUT.format(filename="status.json")
        self.node.base.extras.set("cgcnn_dataset_cached", True)
        state = status["status"]
        if state in _STATUS_TO_EXIT:
            return getattr(exit_codes, _STATUS_TO_EXIT[state]).format(message=status.get("message", ""))

        files = {
            name: name for name in ("best.pt", "metrics.json", "learning_curve.csv", "test_predictions.csv")
        }
        listing = set(retrieved.base.repository.list_object_names())
        for required in ("best.pt", "metrics.json", "learning_curve.csv"):
            if files[required] not in listing:
                return exit_codes.ERROR_MISSING_OUTPUT.format(filename=files[required])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            path.write_bytes(retrieved.get_object_content(files["best.pt"], mode="rb"))
            model = ModelData(path)
        self.out("model", model)
        self.out("metrics", orm.Dict(json.loads(retrieved.get_object_content(files["metrics.json"]))))
        self.out(
            "learning_curve", learning_curve_array(retrieved.get_object_content(files["learning_curve.csv"]))
        )
        if files["test_predictions.csv"] in listing:
            content = retrieved.get_object_content(files["test_predictions.csv"], mode="rb")
            self.out(
                "test_predictions", orm.SinglefileData(io.BytesIO(content), filename="test_predictions.csv")
            )
        if state == "time_budget":
            return exit_codes.STOPPED_BEFORE_WALLTIME
        return None


def _tail(retrieved: orm.FolderData, name: str, lines: int = 5) -> str:
    try:
        text = retrieved.get_object_content(name)
    except (FileNotFoundError, OSError):
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
