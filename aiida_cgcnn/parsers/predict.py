"""Parser of ``cgcnn.predict``.

Every file is read and checked first and the outputs are attached only at the end: a truncated or
corrupted file gives ``ERROR_CORRUPTED_OUTPUT`` naming it, and no output at all.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from .._gc import without_gc
from ..data.ensemble import EnsembleData
from ..predict import parse_predictions_csv
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

__all__ = ["PredictParser"]

PREDICTIONS = "predictions.csv"


def _number(value: Any, filename: str, row_id: Any, column: str) -> float:
    """``value`` as a float (NaN allowed: a model may predict it), else CorruptedOutputError."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    raise CorruptedOutputError(filename, f"the {column!r} of {str(row_id)!r} is {str(value)!r}, not a number")


def _check_count(rows: int, skipped: int, dataset: Any) -> None:
    """Every structure of the dataset is either predicted or skipped: fewer rows is a truncated file."""
    size = dataset.base.attributes.get("size")
    if size is not None and rows + skipped != size:
        raise CorruptedOutputError(
            PREDICTIONS,
            f"{rows} rows and {skipped} skipped structures, but the dataset has {size} (truncated?)",
        )


class PredictParser(Parser):
    """Turns ``predictions.csv`` into an ``ArrayData`` (``ids``, ``values``) and lists skipped structures."""

    @without_gc  # a shard of 10^5 rows
    def parse(self, **kwargs: Any) -> ExitCode | None:
        retrieved = self.retrieved
        exit_codes = self.node.process_class.exit_codes
        try:
            status = read_status(retrieved)
            if status is None:
                return exit_code_without_status(self.node, retrieved)
            failure = exit_code_of_status(self.node, status, set(STATUS_TO_EXIT) - {"diverged"})
            if failure is not None:
                return failure
            try:
                text = read_text(retrieved, PREDICTIONS)
            except (FileNotFoundError, OSError):
                return exit_codes.ERROR_MISSING_OUTPUT.format(filename=PREDICTIONS)  # type: ignore[no-any-return]
            model = self.node.inputs.model
            if isinstance(model, EnsembleData):
                outputs = self._ensemble_outputs(model, text, status)
            else:
                outputs = self._model_outputs(model, text, status)
        except CorruptedOutputError as error:
            return exit_code_of_corrupted(self.node, error)
        for label, node in outputs.items():  # nothing is attached before everything was read
            self.out(label, node)
        return None

    def _skipped(self, status: dict[str, Any]) -> orm.Dict:
        skipped = status.get("skipped", [])
        try:
            return orm.Dict({str(s["id"]): str(s["reason"]) for s in skipped})
        except (TypeError, KeyError):
            raise CorruptedOutputError("status.json", "'skipped' is not a list of {id, reason}") from None

    def _model_outputs(self, model: Any, text: str, status: dict[str, Any]) -> dict[str, orm.Data]:
        check_csv_rows(text, PREDICTIONS)
        try:
            units, body = parse_predictions_csv(text)  # units: every column, in the file's order
        except ValueError as error:
            raise CorruptedOutputError(PREDICTIONS, str(error)) from None
        task = model.base.attributes.get("task")
        header = [c for c in units if c != "id"]
        if task == "classification":
            columns = [c for c in header if c.startswith("p_")]
            classes = model.base.attributes.get("classes", [])
            expected = [f"p_{c}" for c in classes] if classes else columns  # unnamed: p_0, p_1, ...
        else:
            columns = [c for c in header if c.endswith("_pred")]
            expected = [f"{name}_pred" for name in model.targets]
        if "id" not in units or columns != expected:
            raise CorruptedOutputError(
                PREDICTIONS, f"the columns are {list(units)}, the model predicts {expected}"
            )
        skipped = self._skipped(status)
        _check_count(len(body), len(status.get("skipped", [])), self.node.inputs.dataset)
        values = [[_number(r[c], PREDICTIONS, r["id"], c) for c in columns] for r in body]
        predictions = orm.ArrayData()
        predictions.set_array("ids", np.array([r["id"] for r in body], dtype=str))
        predictions.set_array("values", np.array(values, dtype=np.float64).reshape(len(body), len(columns)))
        predictions.base.attributes.set_many(
            {
                "target_names": model.targets,
                "units": model.units,
                "task": task,
                "classes": model.base.attributes.get("classes", []),
            }
        )
        outputs: dict[str, orm.Data] = {"predictions": predictions, "skipped": skipped}
        try:
            sites = read_text(self.retrieved, "sites.csv")
        except (FileNotFoundError, OSError):
            return outputs
        check_csv_rows(sites, "sites.csv")
        outputs["site_contributions"] = orm.SinglefileData(io.BytesIO(sites.encode()), filename="sites.csv")
        return outputs

    def _ensemble_outputs(
        self, model: EnsembleData, text: str, status: dict[str, Any]
    ) -> dict[str, orm.Data]:
        """Mean, calibrated std, per-atom values and out-of-domain flags of an ensemble's CSV."""
        comment = 1 if text.startswith("# model: ") else 0
        # column by column: a shard of 10^5 rows as one dict per row costs seconds of the engine's time
        table = check_csv_rows(text, PREDICTIONS, skip=comment)
        if len(table) < 2 or table[1][:1] != ["# units"]:
            raise CorruptedOutputError(PREDICTIONS, "not an ensemble predictions CSV (no '# units' row)")
        header, body = table[0], table[2:]
        columns = dict(zip(header, zip(*body, strict=True) if body else [()] * len(header), strict=True))
        names, basis = model.targets, model.basis
        required = ["id", "basis_atoms", "out_of_domain", *(f"{name}_pred" for name in names)]
        missing = [c for c in required if c not in columns]
        if missing:
            raise CorruptedOutputError(PREDICTIONS, f"lacks the columns {missing} of the ensemble's targets")
        skipped = self._skipped(status)
        _check_count(len(body), len(status.get("skipped", [])), self.node.inputs.dataset)
        n, t = len(body), len(names)

        def numbers(name: str, dtype: type = np.float64) -> np.ndarray:
            try:
                return np.array(columns[name], dtype=dtype).reshape(n)
            except ValueError as error:
                raise CorruptedOutputError(PREDICTIONS, f"column {name!r}: {error}") from None

        def column(suffix: str) -> np.ndarray:
            out = np.full((n, t), math.nan)
            for k, name in enumerate(names):
                if f"{name}{suffix}" in columns:
                    out[:, k] = numbers(f"{name}{suffix}")
            return out

        ids = list(columns["id"])
        out_of_domain = list(columns["out_of_domain"])
        predictions = orm.ArrayData()
        predictions.set_array("ids", np.array(ids, dtype=str))
        predictions.set_array("values", column("_pred"))
        predictions.set_array("std", column("_std"))
        predictions.set_array("values_per_atom", column("_per_atom"))
        predictions.set_array("std_per_atom", column("_per_atom_std"))
        predictions.set_array("basis_atoms", numbers("basis_atoms", np.int64))
        predictions.set_array("out_of_domain", np.array([bool(r) for r in out_of_domain], dtype=bool))
        predictions.base.attributes.set_many(
            {
                "target_names": names,
                "units": model.units,
                "basis": basis,
                "task": "regression",
                "classes": [],
                "model": model.model_label,
            }
        )
        flagged = {i: reason for i, reason in zip(ids, out_of_domain, strict=True) if reason}
        return {
            "predictions": predictions,
            "skipped": skipped,
            "out_of_domain": orm.Dict(flagged),
            "n_out_of_domain": orm.Int(len(flagged)),
        }
