"""Shipped pretrained ensembles imported into a profile once, with where they came from.

:func:`import_pretrained` makes (or finds) the :class:`~.ensemble.EnsembleData` of a shipped model.
The node is the output of the calcfunction :func:`pretrained_model`, whose inputs describe the
training data (source, functional, licence, sha256 of the source file), the recipe and the test
metrics, so ``verdi node show`` and the graph say what the model is without opening the card.
"""

from __future__ import annotations

import typing as t

from aiida import orm
from aiida.engine import calcfunction

from .ensemble import EnsembleData, ensemble_sha256

__all__ = ["GROUP_LABEL", "import_pretrained", "pretrained_model"]

#: Every imported pretrained ensemble is in this group (``verdi group show cgcnn/pretrained``).
GROUP_LABEL = "cgcnn/pretrained"


def _training_data(entry: dict[str, t.Any]) -> dict[str, t.Any]:
    source, data = entry["source"], entry.get("data", {})
    return {
        "path": source.get("path"),
        "description": source.get("description"),
        "functional": source.get("functional"),
        "licence": source.get("licence"),
        "targets": source.get("targets"),
        "filters": data.get("filters", source.get("filters")),
        "source_sha256": data.get("sha256"),
        "dataset_sha256": data.get("dataset_sha256"),
        "structures": data.get("structures"),
        "left_out": data.get("left_out"),
        "left_out_reasons": data.get("left_out_reasons", {}),
        "split_counts": entry.get("split_counts", {}),
    }


def _recipe(entry: dict[str, t.Any]) -> dict[str, t.Any]:
    return {
        "name": entry["name"],
        "version": entry["version"],
        "title": entry.get("title", ""),
        "model": entry.get("model", {}),
        "train": entry.get("train", {}),
        "split": entry.get("split", {}),
        "members": entry.get("members", len(entry["files"])),
        "targets": entry["targets"],
        "extensive": entry.get("extensive", {}),
        "limits": entry.get("limits", ""),
        "member_sha256": [item["sha256"] for item in entry["files"]],
        "package_version": entry.get("package_version"),
        "built": entry.get("built"),
    }


def _source_name(entry: dict[str, t.Any]) -> str:
    return f"{entry['source']['path'].split('/')[0]} ({entry['source']['functional']})"


@calcfunction
def pretrained_model(training_data: orm.Dict, recipe: orm.Dict, metrics: orm.Dict) -> dict[str, EnsembleData]:
    """The installed model folder named by ``recipe`` as an ``EnsembleData`` (output ``ensemble``).

    The inputs record what the ensemble was trained on (``training_data``), how (``recipe``) and how
    well it does on its held-out test part (``metrics``); the installed members must be the ones the
    recipe lists.
    """
    from ..pretrained.registry import MODELS_DIR

    name, version = recipe["name"], recipe["version"]
    node = EnsembleData(folder=MODELS_DIR / name)
    if node.version != version or node.member_sha256 != list(recipe["member_sha256"]):
        raise ValueError(
            f"the installed {name!r} is v{node.version} with other members than the recipe's v{version}; "
            "import it again with import_pretrained"
        )
    node.description = f"{recipe['title']}. {recipe['limits']}".strip(". ") + "."
    return {"ensemble": node}


def _find(digest: str) -> EnsembleData | None:
    query = orm.QueryBuilder().append(EnsembleData, filters={"attributes.sha256": digest}, project="*")
    # a node whose files were altered after storing is never returned: a new import replaces it
    return next((node for node in query.order_by({EnsembleData: "id"}).all(flat=True) if node.verify()), None)


def import_pretrained(name: str) -> EnsembleData:
    """The stored ``EnsembleData`` of the shipped model ``name`` (``aiida-cgcnn pretrained list``).

    The first call in a profile runs :func:`pretrained_model` and adds the node to the group
    ``cgcnn/pretrained``; later calls return that node (found by its ``sha256`` attribute) and
    create nothing.
    """
    from ..pretrained.registry import card, model_label

    entry = card(name)
    node = _find(ensemble_sha256(entry))
    if node is None:
        label = f"{entry['name']} v{entry['version']}"
        training_data = orm.Dict(_training_data(entry), label=f"{_source_name(entry)} training data")
        training_data.description = entry["source"].get("description", "")
        recipe = orm.Dict(_recipe(entry), label=f"{label} recipe")
        recipe.description = f"model, training settings, split and members of pretrained {label}"
        metrics = orm.Dict(entry.get("metrics", {}), label=f"{label} test metrics")
        metrics.description = f"measured on the held-out test part of {_source_name(entry)}"
        result = pretrained_model(
            training_data=training_data,
            recipe=recipe,
            metrics=metrics,
            metadata={"label": f"import pretrained {label}", "description": model_label(entry)},  # type: ignore[call-arg]
        )
        node = result["ensemble"]
    group, _ = orm.Group.collection.get_or_create(GROUP_LABEL)
    if not group.is_stored:
        group.store()
    group.description = group.description or "pretrained ensembles imported with import_pretrained"
    group.add_nodes(node)  # no-op when already a member
    return node
