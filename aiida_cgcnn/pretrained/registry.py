"""The shipped models: one folder per model under ``models/`` with its member checkpoints and its
``card.json`` (recipe, data with sha256, split, test metrics, calibration, domain). Read offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

__all__ = [
    "MODELS_DIR",
    "UnknownModelError",
    "available",
    "card",
    "member_files",
    "member_path",
    "model_label",
    "sha256_file",
]

MODELS_DIR = Path(__file__).resolve().parent / "models"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member_path(folder: Path, name: str) -> Path:
    """``folder / name`` for a member a card lists, refused (:class:`CheckpointError`) unless ``name`` is
    a relative path without ``..`` that stays inside ``folder`` once symbolic links are followed: a
    card from elsewhere must not make us read, copy or write a file outside its model folder."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or "\\" in name or ".." in parts:
        raise CheckpointError(
            f"the card in {str(folder)!r} lists the member {name!r}, not a plain relative path inside the "
            "model folder: refused; use a model folder built by `aiida-cgcnn pretrained build`"
        )
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise CheckpointError(
            f"the member {name!r} in {str(folder)!r} is a link to {str(path.resolve())!r}, outside the "
            "model folder: refused; copy the file into the folder instead"
        )
    return path


class UnknownModelError(ValueError):
    """No shipped model has this name."""


def available() -> list[str]:
    """Names of the models shipped in this installation."""
    return sorted(p.parent.name for p in MODELS_DIR.glob("*/card.json"))


def card(name: str) -> dict[str, Any]:
    """The registry entry of model ``name``."""
    path = MODELS_DIR / name / "card.json"
    if not path.is_file():
        raise UnknownModelError(
            f"no pretrained model {name!r}; available: {', '.join(available()) or 'none'} "
            "(`aiida-cgcnn pretrained list`)"
        )
    return json.loads(path.read_text())


def model_label(entry: dict[str, Any]) -> str:
    """``pretrained NAME vN, trained on SOURCE (FUNCTIONAL)``, as provenance listings print it; an
    ensemble of a profile's own models (its card lists ``member_models``) is not called pretrained."""
    source = entry["source"]["path"].split("/")[0]
    functional = entry["source"]["functional"]
    kind = "ensemble" if entry.get("member_models") else "pretrained"
    return f"{kind} {entry['name']} v{entry['version']}, trained on {source} ({functional})"


def member_files(
    name: str, entry: dict[str, Any] | None = None, verify: bool = True, folder: Path | None = None
) -> list[Path]:
    """The member checkpoints of ``name`` (in ``folder``, by default the installed model's), each
    checked against the sha256 its card records."""
    entry = entry or card(name)
    folder = folder or MODELS_DIR / name
    files = []
    for item in entry["files"]:
        path = member_path(folder, item["path"])
        if not path.is_file():
            raise CheckpointError(f"pretrained model {name!r} lacks {item['path']}: reinstall aiida-cgcnn")
        if verify and sha256_file(path) != item["sha256"]:
            raise CheckpointError(
                f"{path} does not match the sha256 in the card of {name!r}: the file was altered; "
                "reinstall aiida-cgcnn"
            )
        files.append(path)
    return files
