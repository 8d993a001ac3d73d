"""A really full disk for the tests: a small tmpfs mounted on a fresh directory (needs root, or the
mount privilege; the test is skipped, with the reason, where mounting is not allowed)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4096


def pages(size: int) -> int:
    """Bytes that ``size`` bytes of a file take on a tmpfs: whole pages."""
    return -(-size // PAGE) * PAGE


@contextlib.contextmanager
def small_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes (rounded up to pages) mounted on the new directory ``path``, unmounted
    on exit; skips the test where it cannot be mounted."""
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no `mount` command to make a small full filesystem")
    path.mkdir(parents=True)
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={pages(size)}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root and the mount privilege needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=30)
