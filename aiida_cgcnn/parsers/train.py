"""Parser of ``cgcnn.train``: the command's ``status.json`` decides the exit code; outputs from the files.

Every file is read and checked first and the outputs are attached only at the end: a truncated or
corrupted file gives ``ERROR_CORRUPTED_OUTPUT`` naming it, and no output at all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..data.model import ModelData
from ..errors import CheckpointError
from .status import (
    STATUS_TO_EXIT,
    CorruptedOutputError,
    check_csv_rows,
    exit_code_of_corrupted,
    exit_code_of_status,
    exit_code_without_status,
    read_status,
    read_text,
)

__all__ = ["TrainParser", "finite_or_none", "learning_curve_array"]

_REQUIRED = ("best.pt", "metrics.json", "learning_curve.csv")


def learning_curve_array(text: str) -> orm.ArrayData:
    """``learning_curve.csv`` as an ``ArrayData`` with one array per column (NaN where empty); raises
    CorruptedOutputError for a file without epochs, cut mid-row or with a value that is no number."""
    check_csv_rows(text, "learning_curve.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise CorruptedOutputError("learning_curve.csv", "a header without epochs")

    def number(row: int, key: str, value: str) -> float:
        try:
            return float(value) if value != "" else np.nan
        except ValueError:
            raise CorruptedOutputError(
                "learning_curve.csv", f"the {key!r} of line {row + 2} is {value!r}, not a number"
            ) from None

    array = orm.ArrayData()
    for key in rows[0]:
        array.set_array(key, np.array([number(k, key, r[key]) for k, r in enumerate(rows)]))
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
        try:
            status = read_status(retrieved)
        except CorruptedOutputError as error:
            return exit_code_of_corrupted(self.node, error)
        if status is None:
            return exit_code_without_status(self.node, retrieved)
        failure = exit_code_of_status(self.node, status, set(STATUS_TO_EXIT))
        if failure is not None:
            return failure

        listing = set(retrieved.base.repository.list_object_names())
        for required in _REQUIRED:
            if required not in listing:
                return exit_codes.ERROR_MISSING_OUTPUT.format(filename=required)  # type: ignore[no-any-return]
        try:
            outputs = self._read_outputs(retrieved, listing)
        except CorruptedOutputError as error:
            return exit_code_of_corrupted(self.node, error)
        for label, node in outputs.items():  # nothing is attached before everything was read
            self.out(label, node)
        if status["status"] == "time_budget":
            return exit_codes.STOPPED_BEFORE_WALLTIME  # type: ignore[no-any-return]
        return None

    @staticmethod
    def _read_outputs(retrieved: orm.FolderData, listing: set[str]) -> dict[str, orm.Data]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            path.write_bytes(retrieved.base.repository.get_object_content("best.pt", mode="rb"))
            try:
                model = ModelData(path)  # weights_only=True: a truncated or foreign file does not load
            except CheckpointError as error:
                # the message names a temporary copy: keep what is wrong, on one line
                reason = re.sub(r"^'[^']*' (is )?", "", str(error).strip().splitlines()[0])
                raise CorruptedOutputError("best.pt", reason) from None
        try:
            metrics = json.loads(read_text(retrieved, "metrics.json"))
        except json.JSONDecodeError as error:
            raise CorruptedOutputError("metrics.json", f"not valid JSON ({error})") from None
        if not isinstance(metrics, dict):
            raise CorruptedOutputError("metrics.json", "not a JSON object")
        outputs: dict[str, orm.Data] = {
            "model": model,
            "metrics": orm.Dict(finite_or_none(metrics)),
            "learning_curve": learning_curve_array(read_text(retrieved, "learning_curve.csv")),
        }
        if "test_predictions.csv" in listing:
            text = read_text(retrieved, "test_predictions.csv")
            check_csv_rows(text, "test_predictions.csv")
            outputs["test_predictions"] = orm.SinglefileData(
                io.BytesIO(text.encode()), filename="test_predictions.csv"
            )
        return outputs
