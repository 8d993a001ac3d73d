"""The files of stored nodes checked against the sha256 recorded when they were made, before any use.

The repository of an AiiDA profile is files on a disk (or in an object store): someone with access to
it can change a model's bytes without touching the database. A node's ``sha256`` attribute is fixed
once stored, so comparing the file with it catches every change before ``torch.load`` or an upload.
"""

from __future__ import annotations

import hashlib
import io
import typing as t

from aiida import orm

from ..errors import CheckpointError

__all__ = ["node_name", "validate_unaltered", "verified_content", "write_verified"]


def node_name(node: orm.Node) -> str:
    """``ModelData<12> (uuid …)``, or ``unstored ModelData`` before storing."""
    kind = type(node).__name__
    return f"{kind}<{node.pk}> (uuid {node.uuid})" if node.is_stored else f"unstored {kind}"


def verified_content(
    node: orm.Node,
    name: str,
    expected: str | None,
    error: type[ValueError] = CheckpointError,
    remedy: str = "import the model again from a trusted source",
) -> bytes:
    """The bytes of the repository file ``name`` of ``node`` if their sha256 is ``expected``.

    Raises ``error`` naming the node, the file and what to do when the file was altered after storing
    (or the node records no sha256 to check it against)."""
    content = node.base.repository.get_object_content(name, mode="rb")
    if not expected:
        raise error(f"{node_name(node)} records no sha256 of {name!r}, so it cannot be checked: {remedy}")
    found = hashlib.sha256(content).hexdigest()
    if found != expected:
        raise error(
            f"{node_name(node)}: its file {name!r} was altered after the node was stored "
            f"(sha256 {found[:16]}…, recorded {expected[:16]}…); refused before loading it. "
            f"Do not use this node: {remedy}."
        )
    return content


def validate_unaltered(value: orm.Node | None, _ctx: t.Any) -> str | None:
    """Port validator of a CalcJob's model or dataset: the files it uploads are checked against their
    recorded sha256 before the job is made, so an altered file is never uploaded."""
    node: t.Any = value  # duck-typed: the data classes import this module
    try:
        if hasattr(node, "verified_files"):  # EnsembleData: the card and every member
            node.verified_files()
        elif hasattr(node, "verified_content"):  # ModelData, CrystalDatasetData
            node.verified_content()
    except ValueError as error:  # CheckpointError, DatasetError
        return str(error)
    return None


def write_verified(folder: t.Any, files: dict[str, bytes]) -> None:
    """Write checked bytes (``target path -> content``) into a CalcJob's upload folder, instead of
    copying the files from the repository at upload: what is uploaded is what was checked, with no
    window between the check and the upload in which a stored file could be altered."""
    for target, content in files.items():
        parent, _, name = target.rpartition("/")
        where = folder.get_subfolder(parent, create=True) if parent else folder
        where.create_file_from_filelike(io.BytesIO(content), name, mode="wb")
