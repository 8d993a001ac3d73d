"""Parser of ``cgcnn.predict``."""

from __future__ import annotations

import csv
import io

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from .train import _STATUS_TO_EXIT, _tail, read_status

__all__ = ["PredictParser"]


class PredictParser(Parser):
    """Turns ``predictions.csv`` into an ``ArrayData`` (``ids``, ``values``) and lists skipped structures."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        exit_codes = self.node.process_class.exit_codes
        status = read_status(retrieved)
        if status is None:
            if self.node.exit_status:
                return ExitCode(self.node.exit_status, self.node.exit_message)
            stderr = _tail(retrieved, "aiida.err")
            if stderr:
                return exit_codes.ERROR_COMMAND_FAILED.format(message=stderr)
            return exit_codes.ERROR_MISSING_OUTPUT.format(filename="status.json")
        self.node.base.extras.set("cgcnn_dataset_cached", True)
        if status["status"] in _STATUS_TO_EXIT and status["status"] != "diverged":
            return getattr(exit_codes, _STATUS_TO_EXIT[status["status"]]).format(
                message=status.get("message", "")
            )
        try:
            text = retrieved.get_object_content("predictions.csv")
        except (FileNotFoundError, OSError):
            return exit_codes.ERROR_MISSING_OUTPUT.format(filename="predictions.csv")
        model = self.node.inputs.model
        rows = list(csv.reader(io.StringIO(text)))
        header, body = rows[0], rows[1:]
        task = model.base.attributes.get("task")
        if task == "classification":
            columns = [k for k, name in enumerate(header) if name.startswith("p_")]
        else:
            columns = [k for k, name in enumerate(header) if name.endswith("_pred")]
        predictions = orm.ArrayData()
        predictions.set_array("ids", np.array([r[0] for r in body], dtype=str))
        predictions.set_array(
            "values",
            np.array([[float(r[k]) for k in columns] for r in body]).reshape(len(body), len(columns)),
        )
        predictions.base.attributes.set_many(
            {
                "target_names": model.targets,
                "units": model.units,
                "task": task,
                "classes": model.base.attributes.get("classes", []),
            }
        )
        self.out("predictions", predictions)
        self.out("skipped", orm.Dict({s["id"]: s["reason"] for s in status.get("skipped", [])}))
        try:
            sites = retrieved.get_object_content("sites.csv", mode="rb")
            self.out("site_contributions", orm.SinglefileData(io.BytesIO(sites), filename="sites.csv"))
        except (FileNotFoundError, OSError):
            pass
        return None
