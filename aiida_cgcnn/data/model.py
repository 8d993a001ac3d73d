"""``ModelData``: a trained checkpoint as a node, validated on store and never stored twice."""

from __future__ import annotations

import hashlib
import pathlib
import typing as t

from aiida import orm

from ..errors import CheckpointError
from ..predict import Predictor
from ..training.checkpoint import load_checkpoint
from .dataset import CrystalDatasetData
from .integrity import verified_content

__all__ = ["ModelData"]


def _plain(value: t.Any) -> t.Any:
    """JSON-storable copy of checkpoint metadata (tensors become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


class ModelData(orm.SinglefileData):
    """A checkpoint file (``model.pt``) with attributes users query: ``architecture``, ``targets``,
    ``units``, ``task``, ``pooling``, ``descriptors``, ``metrics``, ``graph_settings``,
    ``dataset_sha256`` and ``sha256``.

    The checkpoint is loaded with ``weights_only=True`` when the node is made, so an invalid file
    never becomes a node, and every later read checks the file against ``sha256`` first, so a file
    altered in the repository after storing is refused (:class:`~aiida_cgcnn.errors.CheckpointError`).
    Use :meth:`get_or_create` to reuse the node of an identical file.
    """

    #: what to do with a node whose file fails its sha256 check
    REMEDY = (
        "import the checkpoint again from a trusted copy (ModelData.get_or_create(path) makes a new node "
        "and never returns an altered one)"
    )

    _FILENAME = "model.pt"

    def __init__(
        self, file: str | pathlib.Path | t.BinaryIO, filename: str | None = None, **kwargs: t.Any
    ) -> None:
        super().__init__(_absolute(file), filename=self._FILENAME, **kwargs)
        self._set_facts()

    def set_file(
        self, file: str | pathlib.Path | t.IO[t.Any], filename: str | pathlib.Path | None = None
    ) -> None:
        super().set_file(_absolute(file), filename=self._FILENAME)
        self._set_facts()

    def _set_facts(self) -> None:
        content = self.get_content(mode="rb")
        checkpoint = self._load(content)
        config = checkpoint["model_config"]
        targets = checkpoint["targets"]
        self.base.attributes.set_many(
            {
                "architecture": config.get("architecture", "cgcnn"),
                "pooling": config.get("pooling", "mean"),
                "model_config": _plain(config),
                "targets": list(targets["names"]),
                "units": list(targets["units"]),
                "task": targets["task"],
                "classes": list(targets.get("classes", [])),
                "descriptors": list(checkpoint.get("feature_names", [])),
                "graph_settings": _plain(checkpoint["graph_settings"]),
                "metrics": _plain(checkpoint.get("metrics", {})),
                "epochs": _epochs(checkpoint),
                "dataset_sha256": checkpoint.get("dataset", {}).get("sha256"),
                "dataset_size": checkpoint.get("dataset", {}).get("size"),
                "package_version": checkpoint.get("package_version"),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
        self.label = self.label or self.summary[:255]
        if not self.description:
            self.description = _description(self.base.attributes.all)

    @staticmethod
    def _load(content: bytes) -> dict[str, t.Any]:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
            handle.write(content)
            handle.flush()
            return load_checkpoint(handle.name)

    @classmethod
    def get_or_create(cls, path: str | pathlib.Path, store: bool = True) -> ModelData:
        """The stored node of an identical checkpoint file, or a new (stored) one; ``path`` may be
        relative to the working directory."""
        path = pathlib.Path(path).resolve()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        query = orm.QueryBuilder().append(cls, filters={"attributes.sha256": digest}, project="*")
        query.order_by({cls: "id"})
        for existing in query.all(flat=True):
            if existing.verify():  # an altered node of the same recorded sha256 is never reused
                return t.cast(ModelData, existing)
        node = cls(path)
        return node.store() if store else node

    @property
    def sha256(self) -> str:
        return t.cast(str, self.base.attributes.get("sha256"))

    @property
    def targets(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("targets"))

    @property
    def units(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("units"))

    @property
    def metrics(self) -> dict[str, t.Any]:
        return t.cast("dict[str, t.Any]", self.base.attributes.get("metrics", {}))

    @property
    def descriptors(self) -> list[str]:
        """Names of the descriptor features of a hybrid (de-CGCNN, de-ALIGNN); empty otherwise."""
        return t.cast("list[str]", self.base.attributes.get("descriptors", []))

    @property
    def dataset_sha256(self) -> str | None:
        """sha256 of the training dataset's content (``CrystalDataset.sha256``), from the checkpoint."""
        return t.cast("str | None", self.base.attributes.get("dataset_sha256"))

    @property
    def kind(self) -> str:
        """``CGCNN``, ``ALIGNN``, or ``de-CGCNN``/``de-ALIGNN`` for a hybrid with descriptors."""
        return model_kind(self.base.attributes.get("architecture", "cgcnn"), bool(self.descriptors))

    @property
    def summary(self) -> str:
        """One line: kind, pooling, targets with units, epochs, e.g.
        ``de-CGCNN (mean) U [kJ/mol], Cv [J/(K mol)]; 40 epochs``."""
        attributes = self.base.attributes
        targets = ", ".join(
            f"{name} [{unit}]" if unit else name for name, unit in zip(self.targets, self.units, strict=True)
        )
        epochs = attributes.get("epochs")
        trained = f"; {epochs} epoch{'s' if epochs != 1 else ''}" if epochs else ""
        return f"{self.kind} ({attributes.get('pooling', 'mean')}) {targets}{trained}"

    def mae_per_target(self) -> dict[str, tuple[float, str]]:
        """Test MAE per target with its unit (for a classifier: ``accuracy`` with unit ``""``); empty
        when the checkpoint has no test metrics. Never averaged across targets of different units."""
        return mae_per_target(self.metrics, self.targets, self.units)

    def verified_content(self) -> bytes:
        """The checkpoint file's bytes, after checking them against the ``sha256`` recorded when the node
        was made; raises :class:`~aiida_cgcnn.errors.CheckpointError` naming the node if they differ."""
        return verified_content(self, self.filename, self.sha256, remedy=self.REMEDY)

    def verify(self) -> bool:
        """Whether the checkpoint file still has the ``sha256`` recorded when the node was made."""
        try:
            self.verified_content()
        except CheckpointError:
            return False
        return True

    def get_checkpoint(self) -> dict[str, t.Any]:
        """The checkpoint dictionary (``weights_only=True``), its file checked against ``sha256`` first."""
        return self._load(self.verified_content())

    def get_predictor(self, device: str = "cpu") -> Predictor:
        """A :class:`~aiida_cgcnn.predict.Predictor` for this model."""
        return Predictor(self.get_checkpoint(), device=device)

    def get_training_dataset(self) -> CrystalDatasetData | None:
        """The ``CrystalDatasetData`` this model was trained on: the dataset input of its training in
        the graph, else a stored dataset whose content has the checkpoint's ``dataset_sha256`` and the model's
        target names (a model imported from a command-line run; the oldest such node); None if neither
        is in the profile."""
        creator = self.creator
        if creator is not None:
            link = creator.base.links.get_incoming(node_class=CrystalDatasetData).first()
            if link is not None:
                return t.cast(CrystalDatasetData, link.node)
        digest = self.dataset_sha256
        if not digest:
            return None
        query = orm.QueryBuilder().append(
            CrystalDatasetData, filters={"attributes.dataset_sha256": digest}, project="*"
        )
        found = t.cast("list[CrystalDatasetData]", query.order_by({CrystalDatasetData: "id"}).all(flat=True))
        # the content hash leaves out target names: the same values under other names are another dataset
        named = [node for node in found if node.base.attributes.get("target_names") == self.targets]
        return named[0] if named else None

    # not aiida-core's Data.export (format conversion): the checkpoint file itself
    def export(self, path: str | pathlib.Path) -> pathlib.Path:  # type: ignore[override]
        path = pathlib.Path(path)
        path.write_bytes(self.verified_content())
        return path


def model_kind(architecture: str, hybrid: bool) -> str:
    """``CGCNN``/``ALIGNN``, or ``de-CGCNN``/``de-ALIGNN`` for a descriptor hybrid."""
    name = architecture.upper()
    return f"de-{name}" if hybrid else name


def mae_per_target(
    metrics: dict[str, t.Any], targets: list[str], units: list[str]
) -> dict[str, tuple[float, str]]:
    """Per target the test MAE and its unit, from a checkpoint's metrics (``per_target`` where the model
    has several targets); a classifier's accuracy under ``accuracy``."""
    test = metrics.get("test") or {}
    if "accuracy" in test:
        return {"accuracy": (float(test["accuracy"]), "")}
    per_target = test.get("per_target") or {}
    if len(targets) > 1:
        return {
            name: (float(per_target[name]["mae"]), unit)
            for name, unit in zip(targets, units, strict=True)
            if per_target.get(name, {}).get("mae") is not None  # None: NaN metrics of a diverged model
        }
    if test.get("mae") is not None and targets:
        return {targets[0]: (float(test["mae"]), units[0])}
    return {}


def _epochs(checkpoint: dict[str, t.Any]) -> int | None:
    """Epochs trained: the metrics' count, else the checkpoint's history."""
    metrics = checkpoint.get("metrics") or {}
    if "epochs_run" in metrics:
        return int(metrics["epochs_run"])
    history = checkpoint.get("history")
    return len(history) if history else None


def _description(attributes: dict[str, t.Any]) -> str:
    descriptors = attributes.get("descriptors") or []
    parts = [f"{attributes.get('architecture', 'cgcnn')} checkpoint, sha256 {attributes['sha256'][:12]}"]
    if descriptors:
        parts.append(f"{len(descriptors)} descriptor features ({', '.join(descriptors[:4])}...)")
    if attributes.get("dataset_sha256"):
        size = attributes.get("dataset_size")
        parts.append(
            f"trained on dataset sha256 {attributes['dataset_sha256'][:12]}"
            + (f" ({size} structures)" if size else "")
        )
    errors = mae_per_target(attributes.get("metrics") or {}, attributes["targets"], attributes["units"])
    if errors:
        parts.append("test MAE " + ", ".join(f"{k} {v:.4g} {u}".rstrip() for k, (v, u) in errors.items()))
    return "; ".join(parts)


def _absolute(file: t.Any) -> t.Any:
    """A relative path (``run/best.pt``) as an absolute one: aiida-core's SinglefileData refuses it."""
    return pathlib.Path(file).resolve() if isinstance(file, (str, pathlib.PurePath)) else file
