"""``ModelData``: a trained checkpoint as a node, validated on store and never stored twice."""

from __future__ import annotations

import hashlib
import pathlib
import typing as t

from aiida import orm

from ..training.checkpoint import load_checkpoint

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
    never becomes a node. Use :meth:`get_or_create` to reuse the node of an identical file.
    """

    _FILENAME = "model.pt"

    def __init__(self, file: str | pathlib.Path | t.BinaryIO, filename: str | None = None, **kwargs):
        super().__init__(_absolute(file), filename=self._FILENAME, **kwargs)
        self._set_facts()

    def set_file(self, file, filename=None, **kwargs) -> None:
        super().set_file(_absolute(file), filename=self._FILENAME, **kwargs)
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
                "dataset_sha256": checkpoint.get("dataset", {}).get("sha256"),
                "package_version": checkpoint.get("package_version"),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )

    @staticmethod
    def _load(content: bytes) -> dict:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
            handle.write(content)
            handle.flush()
            return load_checkpoint(handle.name)

    @classmethod
    def get_or_create(cls, path: str | pathlib.Path, store: bool = True) -> ModelData:
        """The stored node of an identical checkpoint file, or a new (stored) one."""
        digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
        existing = (
            orm.QueryBuilder()
            .append(cls, filters={"attributes.sha256": digest}, project="*")
            .first(flat=True)
        )
        if existing is not None:
            return existing
        node = cls(pathlib.Path(path))
        return node.store() if store else node

    @property
    def sha256(self) -> str:
        return self.base.attributes.get("sha256")

    @property
    def targets(self) -> list[str]:
        return self.base.attributes.get("targets")

    @property
    def units(self) -> list[str]:
        return self.base.attributes.get("units")

    @property
    def metrics(self) -> dict:
        return self.base.attributes.get("metrics", {})

    def get_checkpoint(self) -> dict:
        """The checkpoint dictionary (``weights_only=True``)."""
        return self._load(self.get_content(mode="rb"))

    def get_predictor(self, device: str = "cpu"):
        """A :class:`~aiida_cgcnn.predict.Predictor` for this model."""
        from ..predict import Predictor

        return Predictor(self.get_checkpoint(), device=device)

    def calculator(self, **kwargs):
        """An ASE :class:`~aiida_cgcnn.ase.CGCNNCalculator` for this model (``record=True`` to store
        its predictions in the provenance graph)."""
        from ..ase import CGCNNCalculator

        return CGCNNCalculator(self, **kwargs)

    def get_training_dataset(self):
        """The ``CrystalDatasetData`` this model was trained on, if its training is in the graph."""
        from .dataset import CrystalDatasetData

        creator = self.creator
        if creator is None:
            return None
        dataset = creator.base.links.get_incoming(node_class=CrystalDatasetData).first()
        return None if dataset is None else dataset.node

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_bytes(self.get_content(mode="rb"))
        return path


def _absolute(file):
    """A relative path (``run/best.pt``) as an absolute one: aiida-core's SinglefileData refuses it."""
    return pathlib.Path(file).resolve() if isinstance(file, (str, pathlib.PurePath)) else file
