"""``EnsembleData``: a whole ensemble (card and member checkpoints) as one node, validated when made.

One node holds every member: an ensemble's prediction is the mean and calibrated spread of all its
members, so no member is a model on its own, and the card (scale, domain, basis) belongs to the set.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile
import typing as t

from aiida import orm

from ..ensemble import Ensemble
from ..errors import CheckpointError
from ..pretrained.registry import member_path, sha256_file
from ..training.checkpoint import load_checkpoint
from .integrity import node_name, verified_content

__all__ = ["EnsembleData", "ensemble_sha256"]

CARD = "card.json"


def ensemble_sha256(entry: dict[str, t.Any]) -> str:
    """One digest of an ensemble: its name, version and the sha256 of each member file (card order)."""
    payload = {
        "name": entry["name"],
        "version": entry["version"],
        "members": [item["sha256"] for item in entry["files"]],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _metrics(entry: dict[str, t.Any]) -> dict[str, t.Any]:
    """Per target: the test MAE, MAD, MAE/MAD, RMSE, R², per-atom errors where measured and the
    calibrated coverage; the full metrics are in the card (and the creator's ``metrics`` input)."""
    metrics = entry.get("metrics", {})
    out: dict[str, t.Any] = {"n_test": metrics.get("n_test")}
    for name, values in metrics.get("targets", {}).items():
        row = {k: values[k] for k in ("mae", "mad", "mae_over_mad", "rmse", "r2") if k in values}
        if "per_atom" in values:
            row["per_atom"] = {
                k: values["per_atom"][k] for k in ("mae", "mad", "mae_over_mad") if k in values["per_atom"]
            }
        calibration = values.get("calibration", {})
        row.update({k: calibration[k] for k in ("coverage_1sigma", "coverage_2sigma") if k in calibration})
        out[name] = row
    return out


class EnsembleData(orm.FolderData):
    """A pretrained ensemble: ``card.json`` and the member checkpoints, with queryable attributes
    ``name``, ``version``, ``label`` (``pretrained NAME vN, trained on SOURCE (FUNCTIONAL)``),
    ``targets``, ``units``, ``basis``, ``std_scale``, ``domain``, ``members``, ``member_sha256``,
    ``sha256`` (see :func:`ensemble_sha256`), ``metrics``, ``source``, ``data_sha256`` and
    ``package_version``.

    Made from a model folder (``aiida-cgcnn pretrained build`` output); every member's sha256 is
    checked against the card and every member is loaded with ``weights_only=True``, so an altered or
    invalid file never becomes a node; a member path that leaves the folder (absolute, ``..``, a link
    pointing outside) is refused. Every later use (:meth:`export`, :meth:`get_ensemble`, a
    ``cgcnn.predict`` upload) checks the card and every member against the sha256 recorded when the
    node was made first, so a file altered in the repository after storing is refused. Use
    :func:`aiida_cgcnn.data.pretrained.import_pretrained` to import a shipped model once per profile,
    with provenance.
    """

    def __init__(self, folder: str | pathlib.Path | None = None, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        if folder is not None:
            self._set_folder(pathlib.Path(folder))

    def _set_folder(self, folder: pathlib.Path) -> None:
        from ..pretrained.registry import model_label

        card_path = folder / CARD
        if not card_path.is_file():
            raise ValueError(f"{str(folder)!r} is not a model folder: it has no {CARD}")
        entry = json.loads(card_path.read_text())
        missing = [k for k in ("name", "version", "targets", "files", "source") if k not in entry]
        if missing:
            raise ValueError(f"{card_path} lacks {missing}: rebuild it with `aiida-cgcnn pretrained build`")
        if not entry["files"]:
            raise ValueError(f"{card_path} lists no member files")
        for item in entry["files"]:
            path = member_path(folder, item["path"])  # nothing outside the folder is read or copied
            if not path.is_file():
                raise ValueError(f"{str(folder)!r} lacks the member {item['path']} its card lists")
            if sha256_file(path) != item["sha256"]:
                raise ValueError(
                    f"{path} does not match the sha256 in {card_path}: the file was altered; "
                    "use the files the card was built with (reinstall aiida-cgcnn for a shipped model)"
                )
            checkpoint = load_checkpoint(path)  # weights_only=True; raises CheckpointError
            found = list(zip(checkpoint["targets"]["names"], checkpoint["targets"]["units"], strict=True))
            if found != [(target["name"], target["unit"]) for target in entry["targets"]]:
                raise ValueError(f"{path} predicts {found} (name, unit), the card lists {entry['targets']}")
        self.base.repository.put_object_from_file(str(card_path), CARD)
        for item in entry["files"]:
            self.base.repository.put_object_from_file(str(folder / item["path"]), item["path"])
        source = entry["source"]
        self.base.attributes.set_many(
            {
                "name": entry["name"],
                "version": entry["version"],
                "label": model_label(entry),
                "title": entry.get("title", ""),
                "targets": [target["name"] for target in entry["targets"]],
                "units": [target["unit"] for target in entry["targets"]],
                "basis": [target.get("basis", "intensive") for target in entry["targets"]],
                "std_scale": list(entry.get("std_scale") or [1.0] * len(entry["targets"])),
                "domain": entry.get("domain"),
                "members": len(entry["files"]),
                "member_files": [item["path"] for item in entry["files"]],
                "member_sha256": [item["sha256"] for item in entry["files"]],
                "sha256": ensemble_sha256(entry),
                "card_sha256": sha256_file(card_path),
                "metrics": _metrics(entry),
                "source": {k: source.get(k) for k in ("description", "functional", "licence", "path")},
                "data_sha256": entry.get("data", {}).get("sha256"),
                "dataset_sha256": entry.get("data", {}).get("dataset_sha256"),
                "package_version": entry.get("package_version"),
                "architecture": entry.get("model", {}).get("architecture", "cgcnn"),
                "pooling": entry.get("model", {}).get("pooling", "mean"),
            }
        )
        self.label = self.label or model_label(entry)
        self.description = self.description or entry.get("title", "")

    def _validate(self) -> bool:
        super()._validate()
        names = set(self.base.repository.list_object_names())
        expected = {CARD, *self.base.attributes.get("member_files", [])}
        if "sha256" not in self.base.attributes.keys() or not expected <= names:
            raise ValueError("an EnsembleData is made from a model folder: EnsembleData(folder=path)")
        for name, digest in zip(self.member_files, self.member_sha256, strict=True):
            content = self.base.repository.get_object_content(name, mode="rb")
            if hashlib.sha256(content).hexdigest() != digest:
                raise ValueError(f"member {name} changed after the EnsembleData was made")
        return True

    #: what to do with a node whose files fail their sha256 check
    REMEDY = (
        "import the ensemble again from a trusted model folder (EnsembleData(folder=...), or "
        "import_pretrained(name) for a shipped model, which never returns an altered node)"
    )

    def verified_files(self) -> dict[str, bytes]:
        """The card and every member by name, each checked against the sha256 recorded when the node was
        made (members: ``member_sha256``; the card: ``card_sha256``, or for a node made before that was
        kept, the card's own :func:`ensemble_sha256` against ``sha256``). Raises
        :class:`~aiida_cgcnn.errors.CheckpointError` naming the node and the altered file."""
        files = {}
        for name, digest in zip(self.member_files, self.member_sha256, strict=True):
            files[name] = verified_content(self, name, digest, remedy=self.REMEDY)
        if "card_sha256" in self.base.attributes.keys():
            files[CARD] = verified_content(
                self, CARD, self.base.attributes.get("card_sha256"), remedy=self.REMEDY
            )
        else:
            files[CARD] = self.base.repository.get_object_content(CARD, mode="rb")
            try:
                digest = ensemble_sha256(json.loads(files[CARD]))
            except (ValueError, KeyError, TypeError):
                digest = ""
            if digest != self.sha256:
                raise CheckpointError(
                    f"{node_name(self)}: its file {CARD!r} was altered after the node was stored; refused "
                    f"before loading it. Do not use this node: {self.REMEDY}."
                )
        return files

    def verify(self) -> bool:
        """Whether the card and every member still have the sha256 recorded when the node was made."""
        try:
            self.verified_files()
        except CheckpointError:
            return False
        return True

    # --- facts ------------------------------------------------------------------------------------

    @property
    def sha256(self) -> str:
        return t.cast("str", self.base.attributes.get("sha256"))

    @property
    def name(self) -> str:
        return t.cast("str", self.base.attributes.get("name"))

    @property
    def version(self) -> int:
        return t.cast("int", self.base.attributes.get("version"))

    @property
    def model_label(self) -> str:
        """``pretrained NAME vN, trained on SOURCE (FUNCTIONAL)``."""
        return t.cast("str", self.base.attributes.get("label"))

    @property
    def targets(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("targets"))

    @property
    def units(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("units"))

    @property
    def basis(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("basis"))

    @property
    def metrics(self) -> dict[str, t.Any]:
        return t.cast("dict[str, t.Any]", self.base.attributes.get("metrics", {}))

    def mae_per_target(self) -> dict[str, tuple[float, str]]:
        """Test MAE per target with its unit, as measured when the ensemble was built."""
        metrics = self.metrics
        return {
            name: (float(metrics[name]["mae"]), unit)
            for name, unit in zip(self.targets, self.units, strict=True)
            if "mae" in metrics.get(name, {})
        }

    @property
    def member_files(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("member_files"))

    @property
    def member_sha256(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("member_sha256"))

    def get_card(self) -> dict[str, t.Any]:
        """The full card (recipe, data, split, metrics, calibration, domain)."""
        return t.cast("dict[str, t.Any]", json.loads(self.base.repository.get_object_content(CARD, mode="r")))

    # --- use --------------------------------------------------------------------------------------

    # not aiida-core's Data.export (format conversion): the model folder itself
    def export(self, folder: str | pathlib.Path) -> pathlib.Path:  # type: ignore[override]
        """Write the card and the members to ``folder`` (a model folder for ``aiida-cgcnn predict
        --model FOLDER`` or ``Ensemble.from_directory``)."""
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.verified_files().items():  # checked before anything is written
            member_path(folder, name).write_bytes(content)
        return folder

    def get_ensemble(self) -> Ensemble:
        """The :class:`~aiida_cgcnn.ensemble.Ensemble` of this node (members loaded into memory); for an
        ASE calculator: ``CGCNNCalculator(model=node)`` (``record=True`` stores its predictions)."""
        with tempfile.TemporaryDirectory(prefix="cgcnn-ensemble-") as tmp:
            return Ensemble.from_directory(self.export(tmp))
