"""Parser of ``cgcnn.predict``."""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..data.ensemble import EnsembleData
from ..predict import parse_predictions_csv
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
        model = self.node.inputs.model
        if not isinstance(model, EnsembleData):  # the ensemble path keeps no dataset copy
            self.node.base.extras.set("cgcnn_dataset_cached", True)
        if status["status"] in _STATUS_TO_EXIT and status["status"] != "diverged":
            return getattr(exit_codes, _STATUS_TO_EXIT[status["status"]]).format(
                message=status.get("message", "")
            )
        try:
            text = retrieved.get_object_content("predictions.csv")
        except (FileNotFoundError, OSError):
            return exit_codes.ERROR_MISSING_OUTPUT.format(filename="predictions.csv")
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
            sites = retrieved.get_object_content("sites.csv", mode="rb")
            self.out("site_contributions", orm.SinglefileData(io.BytesIO(sites), filename="sites.csv"))
        except (FileNotFoundError, OSError):
            pass
        return None

    def _parse_ensemble(self, model: EnsembleData, text: str, status: dict) -> None:
        """Mean, calibrated std, per-atom values and out-of-domain flags of an ensemble's CSV."""
        import tempfile

        from ..ensemble import read_ensemble_csv

        with tempfile.TemporaryDirectory(prefix="cgcnn-parse-") as tmp:
            path = f"{tmp}/predictions.csv"
            with open(path, "w") as handle:
                handle.write(text)
            _, _, rows = read_ensemble_csv(path)
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
