"""The per-computer cache of dataset files and graphs that ``cgcnn.train`` and ``cgcnn.predict`` share.

The cache directory is the computer property ``cgcnn_remote_cache`` (``{username}`` is replaced by the
remote user, as in the computer's work directory); by default it is ``<workdir>/cgcnn-cache``, the
directory earlier versions used. A job links it into its working directory as ``cgcnn-cache``.

Whether a dataset file is in the cache is decided by the latest finished calculation on that computer
for that dataset whose outcome says so: one that stored or read it says it is there, one that found it
missing says it is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aiida import orm
from aiida.plugins import CalculationFactory

from ..data.dataset import CrystalDatasetData
from ..data.model import ModelData

if TYPE_CHECKING:
    from aiida.engine import CalcJob

__all__ = [
    "CACHE_LINK",
    "CACHE_PROPERTY",
    "REUSE_OPTION",
    "cache_link_script",
    "cached_dataset_path",
    "define_reuse_option",
    "hashed_metadata",
    "remote_cache_directory",
    "remote_dataset_available",
]

#: Computer property with the cache directory.
CACHE_PROPERTY = "cgcnn_remote_cache"
#: Name of the link to the cache directory in a job's working directory.
CACHE_LINK = "cgcnn-cache"

_TRAIN = "cgcnn.train"
_PREDICT = "cgcnn.predict"
# exit codes after which the command had stored (or read) the dataset file in the cache; an ensemble
# prediction does not store it, so its success says nothing (its dataset-missing code still does)
_STORED = {
    _TRAIN: ("STOPPED_BEFORE_WALLTIME", "ERROR_LOSS_DIVERGED", "ERROR_OUT_OF_MEMORY"),
    _PREDICT: ("ERROR_OUT_OF_MEMORY",),
}
_MISSING = "ERROR_REMOTE_DATASET_MISSING"


def _verdicts() -> dict[tuple[str, int], bool]:
    """(process type, exit status) -> whether it says the dataset file is in the cache."""
    verdicts = {}
    for name, stored in _STORED.items():
        exit_codes = cast("type[CalcJob]", CalculationFactory(name)).exit_codes
        process_type = f"aiida.calculations:{name}"
        verdicts[(process_type, 0)] = True
        verdicts.update({(process_type, getattr(exit_codes, label).status): True for label in stored})
        verdicts[(process_type, getattr(exit_codes, _MISSING).status)] = False
    return verdicts


def remote_cache_directory(computer: orm.Computer) -> str:
    """The cache directory on ``computer`` (may contain ``{username}``)."""
    configured = computer.get_property(CACHE_PROPERTY, None)
    if configured:
        return str(configured)
    return f"{computer.get_workdir().rstrip('/')}/cgcnn-cache"


def _double_quoted(path: str) -> str:
    """``path`` for bash inside double quotes, with ``{username}`` as ``$(whoami)``, as AiiDA fills it."""
    parts = []
    for piece in path.split("{username}"):
        for char in '\\"$`':
            piece = piece.replace(char, f"\\{char}")
        parts.append(piece)
    return '"' + "$(whoami)".join(parts) + '"'


def cache_link_script(computer: orm.Computer) -> str:
    """Job script lines that create the cache directory and link it into the working directory."""
    directory = _double_quoted(remote_cache_directory(computer))
    return f"mkdir -p {directory} && ln -sfn {directory} {CACHE_LINK}"


def cached_dataset_path(dataset: CrystalDatasetData) -> str:
    """Where the job finds the cached copy of ``dataset``, relative to its working directory."""
    return f"{CACHE_LINK}/datasets/{dataset.sha256}.npz"


def remote_dataset_available(dataset: CrystalDatasetData, computer: orm.Computer) -> bool:
    """Whether the latest calculation that can tell says ``dataset``'s file is in ``computer``'s cache."""
    verdicts = _verdicts()
    query = orm.QueryBuilder()
    query.append(CrystalDatasetData, filters={"attributes.sha256": dataset.sha256}, tag="dataset")
    query.append(
        orm.CalcJobNode,
        with_incoming="dataset",
        edge_filters={"label": "dataset"},
        filters={
            "dbcomputer_id": computer.pk,
            "process_type": {"in": sorted({process_type for process_type, _ in verdicts})},
            "attributes.exit_status": {"in": sorted({status for _, status in verdicts})},
        },
        project=["id", "process_type", "attributes.exit_status"],
    )
    query.order_by({orm.CalcJobNode: {"ctime": "desc"}})
    rows = [
        (pk, process_type, verdicts.get((process_type, status))) for pk, process_type, status in query.all()
    ]
    # a prediction's success counts only for a single model: one query for all such candidates, not
    # a node and its inputs loaded per row (a group screened again and again has many)
    successes = [pk for pk, process_type, verdict in rows if verdict and process_type.endswith(_PREDICT)]
    single = _with_single_model(successes) if successes else set()
    for pk, process_type, verdict in rows:
        if verdict is None:
            continue
        if verdict and process_type.endswith(_PREDICT) and pk not in single:
            continue
        return verdict
    return False


def _with_single_model(pks: list[int]) -> set[int]:
    """Those of the calculations ``pks`` whose ``model`` input is a ``ModelData``."""
    query = orm.QueryBuilder()
    query.append(orm.CalcJobNode, filters={"id": {"in": pks}}, project="id", tag="calculation")
    query.append(ModelData, with_outgoing="calculation", edge_filters={"label": "model"})
    return set(query.all(flat=True))


#: ``metadata.options`` switch: read the cached dataset file instead of uploading it.
REUSE_OPTION = "reuse_remote_dataset"


def define_reuse_option(spec: Any) -> None:
    """Declare the ``metadata.options.reuse_remote_dataset`` switch on a CalcJob's ``spec``."""
    spec.input(
        f"metadata.options.{REUSE_OPTION}",
        valid_type=bool,
        default=True,
        help="Read the copy of the dataset that an earlier calculation left in the computer's cache "
        "instead of uploading it (when that calculation says it is there). A run-time switch: it is not "
        "part of the calculation's hash.",
    )


def hashed_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` without the run-time switches that must not enter the hash; AiiDA still records them
    with the node's ``metadata_inputs`` (outside the hash), so ``get_builder_restart`` keeps them."""
    options = {k: v for k, v in dict(metadata.get("options", {})).items() if k != REUSE_OPTION}
    return {**metadata, "options": options}
