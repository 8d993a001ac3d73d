"""Fixtures of the security tests: the shared AiiDA fixtures, and a way to alter a stored file on disk."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.aiida_fixtures import *  # noqa: F403


@pytest.fixture
def alter_stored_file(aiida_profile) -> Iterator[Callable[[object, str, bytes], Path]]:
    """``alter(node, name, content)`` overwrites the bytes of the stored file ``name`` of ``node`` in the
    profile's disk-objectstore container (a loose object: a plain file named by the sha256 of what was
    stored), as someone with access to the repository's disk could; the originals come back after the
    test, since the container keeps one object for every node of the same content."""
    from aiida.manage import get_manager

    repository = get_manager().get_profile_storage().get_repository()
    originals: list[tuple[Path, bytes]] = []

    def alter(node, name: str, content: bytes) -> Path:
        key = node.base.repository.get_object(name).key
        with repository._container as container:  # aiida-core exposes no writing API for stored objects
            assert container.get_object_meta(key).type.value == "loose", "the test alters loose objects"
            path = Path(container._get_loose_path_from_hashkey(key))
        originals.append((path, path.read_bytes()))
        os.chmod(path, 0o644)
        path.write_bytes(content)
        assert node.base.repository.get_object_content(name, mode="rb") == content  # truly altered
        return path

    yield alter
    for path, content in reversed(originals):
        path.write_bytes(content)
