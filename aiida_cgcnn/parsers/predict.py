"""Parser of ``cgcnn.predict``."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..data.ensemble import EnsembleData
from ..ensemble import parse_ensemble_csv
from ..predict import parse_predictions_csv
from .status import STATUS_TO_EXIT, exit_code_of_status, exit_code_without_status, read_status

__all__ = ["PredictParser"]


class PredictParser(Parser):
    """Turns ``predictions.csv`` into an ``ArrayData`` (``ids``, ``values``) and lists skipped structures."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        retrieved = self.retrieved
        exit_codes = self.node.process_class.exit_codes
        status = read_status(retrieved)
        if status is None:
            return exit_code_without_status(self.node, retrieved)
        failure = exit_code_of_status(self.node, status, set(STATUS_TO_EXIT) - {"diverged"})
        if failure is not None:
            return failure
        model = self.node.inputs.model
        try:
            text = str(retrieved.base.repository.get_object_content("predictions.csv", mode="r"))
        except (FileNotFoundError, OSError):
            return exit_codes.ERROR_MISSING_OUTPUT.format(filename="predictions.csv")  # type: ignore[no-any-return]
        if isinstance(model, EnsembleData):
            self._parse_ensemble(model, text, status)
            return None
        units, body = parse_predictions_csv(text)  # units: every column, in the file's order
        task = model.base.attributes.get("task")
        header = [c for c in units if c != "id"]
        if task == "classification":
            columns = [c for c in header if c.startswith("p_")]
        else:
            columns = [c for c in header if c.endswith("_pred")]
        predictions = orm.ArrayData()
        predictions.set_array("ids", np.array([r["id"] for r in body], dtype=str))
        predictions.set_array(
            "values",
            np.array([[float(r[c]) for c in columns] for r in body]).reshape(len(body), len(columns)),
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
            sites = retrieved.base.repository.get_object_content("sites.csv", mode="rb")
            self.out("site_contributions", orm.SinglefileData(io.BytesIO(sites), filename="sites.csv"))
        except (FileNotFoundError, OSError):
            pass
        return None

    def _parse_ensemble(self, model: EnsembleData, text: str, status: dict[str, Any]) -> None:
        """Mean, calibrated std, per-atom values and out-of-domain flags of an ensemble's CSV."""
        _, _, rows = parse_ensemble_csv(text, source="predictions.csv")
        names, basis = model.targets, model.basis
        n, t = len(rows), len(names)

        def column(suffix: str) -> np.ndarray:
            return np.array(
                [[float(r.get(f"{name}{suffix}", np.nan)) for name in names] for r in rows]
            ).reshape(n, t)

        predictions = orm.ArrayData()
        predictions.set_array("ids", np.array([r["id"] for r in rows], dtype=str))
        predictions.set_array("values", column("_pred"))
        predictions.set_array("std", column("_std"))
        predictions.set_array("values_per_atom", column("_per_atom"))
        predictions.set_array("std_per_atom", column("_per_atom_std"))
        predictions.set_array("basis_atoms", np.array([r["basis_atoms"] for r in rows], dtype=np.int64))
        predictions.set_array("out_of_domain", np.array([bool(r["out_of_domain"]) for r in rows]))
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
        flagged = {r["id"]: r["out_of_domain"] for r in rows if r["out_of_domain"]}
        self.out("predictions", predictions)
        self.out("skipped", orm.Dict({s["id"]: s["reason"] for s in status.get("skipped", [])}))
        self.out("out_of_domain", orm.Dict(flagged))
        self.out("n_out_of_domain", orm.Int(len(flagged)))
