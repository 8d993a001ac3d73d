"""Predictor: a checkpoint in, predictions out. The one prediction path of the CLI, the ASE
calculator and the calcfunctions.

Graphs are rebuilt with the checkpoint's own graph settings and atom-feature table, and results
come back in input order.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InvalidStructureError
from .graph.batch import GraphStore, build_graph_store
from .graph.crystal_graph import GraphSettings
from .models.registry import build_model
from .structures import Crystal, to_crystal
from .training.checkpoint import load_checkpoint
from .training.dataset import CrystalDataset, Skipped

#: Structures whose graphs a prediction holds at once (without a graph cache): its memory does not grow
#: with the number of structures beyond it.
GRAPH_CHUNK = 8192

__all__ = ["Prediction", "Predictor", "parse_predictions_csv", "read_predictions_csv"]


@dataclass
class Prediction:
    """Predictions for the structures that could be predicted, in input order.

    ``values`` are in the units of ``units`` (regression) or class probabilities (classification);
    ``site_values[k]`` are the per-atom contributions of structure k for ``sum``/``site`` pooling.
    """

    ids: list[str]
    values: np.ndarray  # (N, T) or (N, C)
    target_names: list[str]
    units: list[str]
    task: str
    classes: list[str] = field(default_factory=list)
    site_values: list[np.ndarray] | None = None
    crystal_vectors: np.ndarray | None = None
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        """Predicted class index (classification only)."""
        return self.values.argmax(axis=1)

    def columns(self, with_targets: bool = False) -> list[tuple[str, str]]:
        """``(column, unit)`` of the predictions CSV; the id column has no unit."""
        if self.task == "classification":
            classes = self.classes or [str(i) for i in range(self.values.shape[1])]
            return [("id", ""), ("predicted", "class index"), *[(f"p_{c}", "probability") for c in classes]]
        columns = [
            ("id", ""),
            *[(f"{n}_pred", u) for n, u in zip(self.target_names, self.units, strict=True)],
        ]
        if with_targets:
            columns += [(f"{n}_true", u) for n, u in zip(self.target_names, self.units, strict=True)]
        return columns

    def write_csv(self, path: str | os.PathLike, targets: np.ndarray | None = None) -> None:
        """Predictions CSV: the header, a ``# units`` row naming each column's unit (as the ensemble's
        CSV does), then one row per structure in input order. :func:`read_predictions_csv` reads it."""
        columns = self.columns(with_targets=targets is not None)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([c for c, _ in columns])
            writer.writerow([UNITS_ROW, *[u for _, u in columns[1:]]])
            for k, (sid, p) in enumerate(zip(self.ids, self.values, strict=True)):
                if self.task == "classification":
                    writer.writerow([sid, int(p.argmax()), *p.tolist()])
                    continue
                row = [sid, *p.tolist()]
                if targets is not None:
                    row += targets[k].tolist()
                writer.writerow(row)


#: first cell of the row under the header that names each column's unit
UNITS_ROW = "# units"


def parse_predictions_csv(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The unit of every column and one dict per structure (``id`` as text, ``predicted`` as an
    integer, other columns as floats) of a predictions CSV's text. A CSV without the ``# units`` row
    (written before it existed, or ``test_predictions.csv``) reads with empty units."""
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ValueError("the predictions CSV is empty")
    header, body = rows[0], rows[1:]
    units = dict.fromkeys(header, "")
    if body and body[0][:1] == [UNITS_ROW]:
        units.update(zip(header[1:], body[0][1:], strict=True))
        body = body[1:]

    def value(column: str, text: str) -> Any:
        if column == "id":
            return text
        if column == "predicted":
            return int(text)
        try:
            return float(text)
        except ValueError:
            return text

    return units, [{c: value(c, v) for c, v in zip(header, row, strict=True)} for row in body]


def read_predictions_csv(path: str | os.PathLike) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Read what :meth:`Prediction.write_csv` wrote (see :func:`parse_predictions_csv`)."""
    with open(path, newline="") as handle:
        return parse_predictions_csv(handle.read())


def _unique_ids(crystals: list[Crystal], positions: list[int], derived: list[bool]) -> list[Crystal]:
    """Derived labels shared by several structures (two ``Cu4`` cells) get ``#<input position>``
    appended; a :class:`Crystal`'s own id is kept as its caller chose it."""
    counts: dict[str, int] = {}
    for c in crystals:
        counts[c.id] = counts.get(c.id, 0) + 1
    return [
        Crystal(f"{c.id}#{k}", c.lattice, c.frac_coords, c.numbers) if new and counts[c.id] > 1 else c
        for c, k, new in zip(crystals, positions, derived, strict=True)
    ]


def named_crystals(
    structures: Sequence[Any], ids: Sequence[str] | None = None, skip_invalid: bool = False
) -> tuple[list[Crystal], list[int], list[Skipped]]:
    """Valid crystals of ``structures``, the input positions they came from, and the invalid ones.

    Without ``ids``, each structure's own label: ``Crystal.id``, file stem, info/properties "id",
    else the formula (see docs/datasets.md), made unique with ``#<input position>``.
    """
    structures = list(structures)
    given = None if ids is None else [str(i) for i in ids]
    if given is not None and len(given) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(given)} ids")
    crystals, keep, skipped = [], [], []
    for k, obj in enumerate(structures):
        try:
            crystals.append(to_crystal(obj, None if given is None else given[k]))
            keep.append(k)
        except InvalidStructureError as error:
            if not skip_invalid:
                raise
            skipped.append(Skipped(error.structure_id, str(error)))
    if given is None:
        derived = [not isinstance(structures[k], Crystal) for k in keep]
        crystals = _unique_ids(crystals, keep, derived)
    return crystals, keep, skipped


def graph_chunks(
    crystals: Sequence[Crystal],
    settings: GraphSettings,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    structure_hash: str | None = None,
) -> Iterator[tuple[GraphStore, list[int], list[tuple[int, str]]]]:
    """The crystals' graphs, ``GRAPH_CHUNK`` structures at a time (all at once with ``cache_dir``: the
    cache keeps the whole set's graphs under one key). Yields ``(store, kept, failures)``, positions in
    ``crystals``; a caller drops each store before the next is built."""
    step = max(len(crystals), 1) if cache_dir is not None else GRAPH_CHUNK
    for start in range(0, max(len(crystals), 1), step):
        chunk = crystals[start : start + step]
        store, failures = build_graph_store(
            chunk, settings, workers, cache_dir=cache_dir, structure_hash=structure_hash
        )
        bad = {position for position, _ in failures}
        kept = [start + k for k in range(len(chunk)) if k not in bad]
        yield store, kept, [(start + position, message) for position, message in failures]
        del store


class Predictor:
    """Predict with a trained model.

    Build with :meth:`from_checkpoint`; call :meth:`predict` with structures or a dataset.
    """

    def __init__(self, checkpoint: dict[str, Any], device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        state = checkpoint["state_dict"]
        self.model = build_model(checkpoint["model_config"], state["atom_table"])
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        self.graph_settings = GraphSettings.from_dict(checkpoint["graph_settings"])
        targets = checkpoint["targets"]
        self.target_names: list[str] = list(targets["names"])
        self.units: list[str] = list(targets["units"])
        self.task: str = targets["task"]
        self.classes: list[str] = list(targets.get("classes", []))
        self.feature_names: list[str] = list(checkpoint.get("feature_names", []))
        # hybrid models: which descriptors, with which settings (computed for new structures)
        self.descriptors: dict[str, Any] = dict(checkpoint.get("descriptors") or {})

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
        """Load ``path`` (``weights_only=True``) onto the CPU, then move the model to ``device``."""
        return cls(load_checkpoint(Path(path)), device)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.checkpoint.get("metrics", {}))

    def predict(
        self,
        structures: Sequence[Any] | CrystalDataset,
        ids: Sequence[str] | None = None,
        features: np.ndarray | None = None,
        batch_size: int = 256,
        skip_invalid: bool = False,
        workers: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        return_vectors: bool = False,
        max_edges_per_batch: int | None = None,
    ) -> Prediction:
        """Predict for structures (pymatgen, ASE, files, :class:`Crystal`) or a dataset.

        Without ``ids``, each structure is named by its own label, as in
        :func:`~aiida_cgcnn.structures.to_crystal`: ``Crystal.id``, a file's stem,
        ``atoms.info["id"]`` or ``structure.properties["id"]``, else the formula; a label shared by
        several structures gets ``#<input position>`` appended.
        Invalid structures raise :class:`InvalidStructureError`, or with ``skip_invalid`` are
        reported in ``Prediction.skipped`` while the rest are predicted. ``max_edges_per_batch``
        also caps the graph edges of a batch (``batch_size`` caps its structures), for large cells.
        Graphs are built and held for ``GRAPH_CHUNK`` structures at a time; with ``cache_dir``, for
        all at once (the cache keeps the whole set's graphs under one key).
        """
        skipped: list[Skipped] = []
        source_names = None
        if isinstance(structures, CrystalDataset):
            crystals = list(structures.crystals())
            if features is None and structures.features is not None:
                features, source_names = structures.features, structures.feature_names
                if self.descriptors:
                    from .descriptors.hybrid import stored_columns

                    source_names = stored_columns(structures, self.descriptors)
            structure_hash = structures.structure_hash()
        else:
            crystals, keep, skipped = named_crystals(structures, ids, skip_invalid)
            if features is not None:
                features = np.asarray(features)[keep]
            structure_hash = None
        if self.descriptors:
            crystals, features, structure_hash = self._descriptor_inputs(
                crystals, features, source_names, structure_hash, skip_invalid, skipped, workers
            )
        if self.feature_names and features is None:
            raise ValueError(f"this model needs the per-structure features {self.feature_names}")
        if features is not None:
            features = np.asarray(features, dtype=np.float64)
        good: list[int] = []
        parts: list[tuple[np.ndarray, list[np.ndarray] | None, np.ndarray | None]] = []
        for store, kept, failures in graph_chunks(
            crystals, self.graph_settings, workers, cache_dir=cache_dir, structure_hash=structure_hash
        ):
            if failures and not skip_invalid:
                raise InvalidStructureError(crystals[failures[0][0]].id, failures[0][1].split(": ", 1)[-1])
            skipped += [Skipped(crystals[p].id, message) for p, message in failures]
            good += kept
            chunk_features = None if features is None else features[kept]
            parts.append(self._run(store, chunk_features, batch_size, return_vectors, max_edges_per_batch))
            del store
        site_parts = [p[1] for p in parts if p[1] is not None]
        vector_parts = [p[2] for p in parts if p[2] is not None]
        return Prediction(
            ids=[crystals[k].id for k in good],
            values=np.concatenate([p[0] for p in parts]),
            target_names=self.target_names,
            units=self.units,
            task=self.task,
            classes=self.classes,
            site_values=[s for sites in site_parts for s in sites] if site_parts else None,
            crystal_vectors=np.concatenate(vector_parts) if vector_parts else None,
            skipped=skipped,
        )

    def _descriptor_inputs(
        self, crystals, features, source_names, structure_hash, skip_invalid, skipped, workers
    ):
        """The hybrid model's inputs: stored or given features, descriptors computed where missing."""
        from .descriptors.hybrid import model_inputs

        features, kept, failures = model_inputs(
            self.descriptors, self.feature_names, crystals, features, source_names, workers
        )
        if failures and not skip_invalid:
            raise InvalidStructureError(crystals[failures[0][0]].id, failures[0][1].split(": ", 1)[-1])
        if failures:
            skipped += [Skipped(crystals[p].id, message) for p, message in failures]
            crystals, structure_hash = [crystals[k] for k in kept], None
        return crystals, features, structure_hash

    @torch.no_grad()
    def _run(self, store: GraphStore, features, batch_size: int, return_vectors: bool, max_edges=None):
        outputs: list[torch.Tensor] = []
        site_chunks: list[torch.Tensor] = []
        vector_chunks: list[torch.Tensor] = []
        order = np.arange(len(store))
        for batch in store.iter_batches(order, batch_size, features=features, max_edges=max_edges):
            out = self.model(batch.to(self.device))
            prediction = out.prediction
            if self.task == "classification":
                prediction = torch.softmax(prediction, dim=-1)
            outputs.append(prediction.cpu())
            if out.site is not None:
                site_chunks.extend(torch.split(out.site.cpu(), batch.num_atoms.tolist()))
            if return_vectors and out.crystal_vector is not None:
                vector_chunks.append(out.crystal_vector.cpu())
        n_out = len(self.classes) or len(self.target_names)
        values = torch.cat(outputs).double().numpy() if outputs else np.zeros((0, n_out))
        sites = [s.double().numpy() for s in site_chunks] if site_chunks else None
        vectors = torch.cat(vector_chunks).double().numpy() if vector_chunks else None
        return values, sites, vectors
