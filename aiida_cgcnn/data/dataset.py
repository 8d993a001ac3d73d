"""``CrystalDatasetData``: the portable dataset file as a node, with the facts users query as attributes."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import re
import tempfile
import typing as t

from aiida import orm

from ..errors import DatasetError
from ..training.dataset import CrystalDataset
from .integrity import verified_content

__all__ = ["CrystalDatasetData"]

_NAMED = "structure_uuid_text"
_NAMED_LIST = "structure_uuids"
_UUID_TEXT = re.compile(r"[0-9a-fA-F-]+")


class CrystalDatasetData(orm.SinglefileData):
    """A dataset file (``.npz``, see :mod:`aiida_cgcnn.training.dataset`) in the node's repository.

    Attributes: ``size``, ``target_names``, ``units``, ``task``, ``classes``, ``elements``,
    ``feature_names`` (stored descriptors), ``sha256`` (of the file), ``structure_sha256`` and
    ``dataset_sha256`` (of the content, :meth:`CrystalDataset.sha256`: what a checkpoint records as
    its training data, so a model trained on the command line finds its dataset node).

    The file is read without executing code (``allow_pickle=False``), and every read of a stored node
    checks it against ``sha256`` first: a file altered in the repository is refused (``DatasetError``).
    """

    #: what to do with a node whose file fails its sha256 check
    REMEDY = "make the dataset node again from its trusted source structures or file"

    _FILENAME = "dataset.npz"

    def __init__(
        self, file: str | pathlib.Path | t.BinaryIO, filename: str | None = None, **kwargs: t.Any
    ) -> None:
        super().__init__(file, filename=self._FILENAME, **kwargs)
        self._set_facts()

    @classmethod
    def from_dataset(cls, dataset: CrystalDataset, **kwargs: t.Any) -> CrystalDatasetData:
        """Wrap an in-memory :class:`CrystalDataset`."""
        with tempfile.TemporaryDirectory() as tmp:
            path = dataset.save(pathlib.Path(tmp) / cls._FILENAME)
            return cls(io.BytesIO(path.read_bytes()), **kwargs)

    @classmethod
    def from_cgcnn_directory(
        cls, directory: str | os.PathLike[str], skip_invalid: bool = False, **kwargs: t.Any
    ) -> CrystalDatasetData:
        """Read a CGCNN/ALIGNN data directory (``id_prop.csv`` + structure files); the structures that
        were left out with ``skip_invalid`` are listed in the ``skipped`` attribute."""
        dataset, skipped = CrystalDataset.from_cgcnn_directory(directory, skip_invalid=skip_invalid)
        node = cls.from_dataset(dataset, **kwargs)
        node.base.attributes.set("skipped", {s.id: s.reason for s in skipped})
        return node

    def set_file(
        self, file: str | pathlib.Path | t.IO[t.Any], filename: str | pathlib.Path | None = None
    ) -> None:
        super().set_file(file, filename=self._FILENAME)
        self._set_facts()

    def _set_facts(self) -> None:
        content = self.get_content(mode="rb")
        dataset = CrystalDataset.load(io.BytesIO(content))  # validates the format
        header = dataset.header()
        self.base.attributes.set_many(
            {
                "size": header["size"],
                "target_names": header["target_names"],
                "units": header["units"],
                "task": header["task"],
                "classes": header["classes"],
                "elements": header["elements"],
                "feature_names": header["feature_names"],
                "structure_sha256": header["structure_sha256"],
                "dataset_sha256": dataset.sha256(),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
        targets = ", ".join(
            f"{name} [{unit}]" if unit else name
            for name, unit in zip(header["target_names"], header["units"], strict=True)
        )
        if not self.description:
            self.description = (
                f"{header['size']} structures of {', '.join(header['elements'][:12])}; targets {targets}"
                + (f"; {len(header['feature_names'])} descriptor features" if header["feature_names"] else "")
            )

    @property
    def sha256(self) -> str:
        return t.cast(str, self.base.attributes.get("sha256"))

    @property
    def dataset_sha256(self) -> str | None:
        """sha256 of the content (structures, ids, targets); None for a node stored before it was kept."""
        return t.cast("str | None", self.base.attributes.get("dataset_sha256"))

    @property
    def size(self) -> int:
        return t.cast(int, self.base.attributes.get("size"))

    @property
    def target_names(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("target_names"))

    @property
    def units(self) -> list[str]:
        return t.cast("list[str]", self.base.attributes.get("units"))

    def name_structures(self, uuids: t.Sequence[str]) -> None:
        """Names the stored structures the dataset was read from, in order, without linking them (the
        shards of ``cgcnn.screen``): one string attribute, ``structure_uuid_text``, the UUIDs joined by
        commas. A list attribute of 5*10^4 strings cost aiida-core 0.3 s per node to clean and hash
        item by item; a string costs nothing, and a query finds it with ``like`` (:meth:`naming`)."""
        self.base.attributes.set(_NAMED, ",".join(uuids))

    @property
    def named_structures(self) -> list[str]:
        """The UUIDs :meth:`name_structures` recorded (or the list attribute ``structure_uuids`` of
        datasets made before it), in order; empty if none."""
        text = self.base.attributes.get(_NAMED, None)
        if isinstance(text, str):
            return text.split(",") if text else []
        return [str(u) for u in self.base.attributes.get(_NAMED_LIST, [])]

    @staticmethod
    def naming(uuids: t.Iterable[str]) -> dict[str, t.Any]:
        """QueryBuilder filter on ``CrystalDatasetData``: the datasets that name any of ``uuids``
        (:meth:`name_structures`, or the older list attribute)."""
        filters: list[dict[str, t.Any]] = []
        for uuid in uuids:
            if not _UUID_TEXT.fullmatch(uuid):  # no LIKE wildcard or comma can slip in
                raise ValueError(f"{uuid!r} is not a UUID")
            filters.append({f"attributes.{_NAMED}": {"like": f"%{uuid}%"}})
            filters.append({f"attributes.{_NAMED_LIST}": {"contains": [uuid]}})
        return {"or": filters} if filters else {"id": {"<": 0}}  # none: no node has a negative id

    def verified_content(self) -> bytes:
        """The dataset file's bytes, checked against the ``sha256`` recorded when the node was made;
        raises :class:`~aiida_cgcnn.errors.DatasetError` naming the node if they differ."""
        return verified_content(self, self.filename, self.sha256, error=DatasetError, remedy=self.REMEDY)

    def get_dataset(self) -> CrystalDataset:
        """The dataset, read from the repository (its file checked against ``sha256`` first)."""
        return CrystalDataset.load(io.BytesIO(self.verified_content()))

    def get_structures(self) -> list[orm.StructureData]:
        """The structures as (unstored) ``StructureData``, labelled with their dataset ids.

        For a dataset built by :func:`~aiida_cgcnn.calculations.functions.dataset.create_dataset`, the
        stored originals are the calcfunction's inputs: ``get_source_structures()``.
        """
        structures = []
        for crystal in self.get_dataset().crystals():
            node = orm.StructureData(ase=crystal.to_ase())
            node.label = crystal.id
            structures.append(node)
        return structures

    def get_source_structures(self) -> dict[str, orm.StructureData]:
        """The stored ``StructureData`` this dataset was built from, by dataset id (empty if none)."""
        creator = self.creator
        if creator is None:
            return {}
        nodes = creator.base.links.get_incoming(node_class=orm.StructureData).all()
        by_uuid = {link.node.uuid: link.node for link in nodes}
        ids = [str(i) for i in self.get_dataset().ids]
        return {sid: by_uuid[sid] for sid in ids if sid in by_uuid}

    # not aiida-core's Data.export (format conversion): the file itself
    def export(self, path: str | os.PathLike[str]) -> pathlib.Path:  # type: ignore[override]
        path = pathlib.Path(path)
        path.write_bytes(self.verified_content())
        return path
