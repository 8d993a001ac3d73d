"""Parser of ``cgcnn.train``: the command's ``status.json`` decides the exit code; outputs from the files."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..data.model import ModelData
from .status import STATUS_TO_EXIT, exit_code_of_status, exit_code_without_status, read_status

__all__ = ["TrainParser", "finite_or_none", "learning_curve_array"]

_REQUIRED = ("best.pt", "metrics.json", "learning_curve.csv")


def learning_curve_array(text: str) -> orm.ArrayData:
    """``learning_curve.csv`` as an ``ArrayData`` with one array per column (NaN where empty)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    array = orm.ArrayData()
    for key in rows[0] if rows else []:
        array.set_array(key, np.array([float(r[key]) if r[key] != "" else np.nan for r in rows]))
    return array


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: the database stores no NaN (the metrics of a
    run whose loss has blown up but not yet diverged)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


class TrainParser(Parser):
    """Turns the retrieved files into ``model``, ``metrics``, ``learning_curve``, ``test_predictions``."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        retrieved = self.retrieved
        exit_codes = self.node.process_class.exit_codes
        status = read_status(retrieved)
        if status is None:
            return exit_code_without_status(self.node, retrieved)
        failure = exit_code_of_status(self.node, status, set(STATUS_TO_EXIT))
        if failure is not None:
            return failure

        listing = set(retrieved.base.repository.list_object_names())
        for required in _REQUIRED:
            if required not in listing:
                return exit_codes.ERROR_MISSING_OUTPUT.format(filename=required)  # type: ignore[no-any-return]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            path.write_bytes(retrieved.base.repository.get_object_content("best.pt", mode="rb"))
            model = ModelData(path)
        self.out("model", model)
        metrics = json.loads(retrieved.base.repository.get_object_content("metrics.json", mode="r"))
        self.out("metrics", orm.Dict(finite_or_none(metrics)))
        curve = retrieved.base.repository.get_object_content("learning_curve.csv", mode="r")
        self.out("learning_curve", learning_curve_array(str(curve)))
        if "test_predictions.csv" in listing:
            content = retrieved.base.repository.get_object_content("test_predictions.csv", mode="rb")
            self.out(
                "test_predictions", orm.SinglefileData(io.BytesIO(content), filename="test_predictions.csv")
            )
        if status["status"] == "time_budget":
            return exit_codes.STOPPED_BEFORE_WALLTIME  # type: ignore[no-any-return]
        return None
