"""All graphs of a dataset as flat arrays, built once in parallel, cached on disk, sliced into batches.

A batch is the disjoint union of its crystals' graphs: node and edge arrays concatenated, edge
indices shifted, and ``crystal_index`` mapping each atom to its crystal. Slicing is vectorised:
no Python loop over crystals or atoms.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidStructureError
from ..structures import Crystal
from .crystal_graph import GRAPH_FORMAT_VERSION, CrystalGraph, GraphSettings, build_graph

__all__ = ["Batch", "GraphStore", "build_graph_store", "edge_capped_batches", "gather_ranges"]


def gather_ranges(ptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(ptr[i], ptr[i+1])`` for each i in ``indices``, and the lengths."""
    starts = ptr[indices]
    counts = ptr[indices + 1] - starts
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(counts.sum()), counts


def edge_capped_batches(
    indices: np.ndarray, num_edges: np.ndarray, batch_size: int, max_edges: int | None = None
) -> list[np.ndarray]:
    """Split ``indices`` (kept in order) into batches of at most ``batch_size`` crystals and, if
    given, at most ``max_edges`` edges in all (``num_edges`` is indexed like the store); a crystal
    with more edges than the cap makes a batch of its own. Capping edges bounds a batch's memory
    whatever the crystals' sizes (for ALIGNN, line-graph edges are about 12 per edge)."""
    indices = np.asarray(indices, dtype=np.int64)
    if max_edges is None:
        return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    cumulative = np.concatenate([[0], np.cumsum(num_edges[indices])])
    batches, start = [], 0
    while start < len(indices):
        stop = int(np.searchsorted(cumulative, cumulative[start] + max_edges, side="right")) - 1
        stop = min(max(stop, start + 1), start + batch_size)
        batches.append(indices[start:stop])
        start = stop
    return batches


@dataclass
class Batch:
    """A disjoint union of crystal graphs, as tensors.

    ``src``/``dst`` index atoms of the batch; ``crystal_index`` maps atoms to crystals 0..B-1.
    """

    numbers: torch.Tensor  # (n,) long
    src: torch.Tensor  # (m,) long
    dst: torch.Tensor  # (m,) long
    distances: torch.Tensor  # (m,) float
    vectors: torch.Tensor  # (m, 3) float
    crystal_index: torch.Tensor  # (n,) long
    num_atoms: torch.Tensor  # (B,) long
    indices: np.ndarray  # (B,) positions of the crystals in their store
    targets: torch.Tensor | None = None  # (B, T)
    features: torch.Tensor | None = None  # (B, F) extra per-structure inputs

    @property
    def num_crystals(self) -> int:
        return int(self.num_atoms.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(
            move(self.numbers),
            move(self.src),
            move(self.dst),
            move(self.distances),
            move(self.vectors),
            move(self.crystal_index),
            move(self.num_atoms),
            self.indices,
            move(self.targets),
            move(self.features),
        )


@dataclass
class GraphStore:
    """The graphs of many crystals in flat arrays (CSR by crystal), with local atom indices."""

    numbers: np.ndarray  # (A,) int16
    atom_ptr: np.ndarray  # (N+1,) int64
    src: np.ndarray  # (E,) int32, local to the crystal
    dst: np.ndarray  # (E,) int32, local to the crystal
    distances: np.ndarray  # (E,) float32
    vectors: np.ndarray  # (E, 3) float32
    images: np.ndarray  # (E, 3) int16
    edge_ptr: np.ndarray  # (N+1,) int64
    key: str = ""

    def __len__(self) -> int:
        return int(len(self.atom_ptr) - 1)

    @property
    def num_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    @property
    def num_edges(self) -> np.ndarray:
        return np.diff(self.edge_ptr)

    @classmethod
    def from_graphs(cls, graphs: Sequence[CrystalGraph], key: str = "") -> GraphStore:
        def ptr(counts):
            return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

        def cat(name, dtype, shape=()):
            parts = [getattr(g, name) for g in graphs]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *shape), dtype)

        return cls(
            numbers=cat("numbers", np.int16),
            atom_ptr=ptr([g.num_atoms for g in graphs]),
            src=cat("src", np.int32),
            dst=cat("dst", np.int32),
            distances=cat("distances", np.float32),
            vectors=cat("vectors", np.float32, (3,)),
            images=cat("images", np.int16, (3,)),
            edge_ptr=ptr([g.num_edges for g in graphs]),
            key=key,
        )

    def graph(self, index: int) -> CrystalGraph:
        a = slice(self.atom_ptr[index], self.atom_ptr[index + 1])
        e = slice(self.edge_ptr[index], self.edge_ptr[index + 1])
        return CrystalGraph(
            self.numbers[a], self.src[e], self.dst[e], self.distances[e], self.images[e], self.vectors[e]
        )

    def select(self, indices: Sequence[int] | np.ndarray) -> GraphStore:
        """A store of the given crystals only, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        atoms, atom_counts = gather_ranges(self.atom_ptr, indices)
        edges, edge_counts = gather_ranges(self.edge_ptr, indices)
        return GraphStore(
            self.numbers[atoms],
            np.concatenate([[0], np.cumsum(atom_counts)]),
            self.src[edges],
            self.dst[edges],
            self.distances[edges],
            self.vectors[edges],
            self.images[edges],
            np.concatenate([[0], np.cumsum(edge_counts)]),
            key="",
        )

    def batch(
        self,
        indices: Sequence[int] | np.ndarray,
        targets: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> Batch:
        """The disjoint union of the graphs at ``indices`` (``targets``/``features`` indexed alike)."""
        indices = np.asarray(indices, dtype=np.int64)
        atoms, atom_counts = gather_ranges(self.atom_ptr, indices)
        edges, edge_counts = gather_ranges(self.edge_ptr, indices)
        atom_offsets = np.cumsum(atom_counts) - atom_counts
        shift = np.repeat(atom_offsets, edge_counts)
        crystal_index = np.repeat(np.arange(len(indices)), atom_counts)
        return Batch(
            numbers=torch.from_numpy(self.numbers[atoms].astype(np.int64)),
            src=torch.from_numpy(self.src[edges].astype(np.int64) + shift),
            dst=torch.from_numpy(self.dst[edges].astype(np.int64) + shift),
            distances=torch.from_numpy(self.distances[edges]),
            vectors=torch.from_numpy(self.vectors[edges]),
            crystal_index=torch.from_numpy(crystal_index),
            num_atoms=torch.from_numpy(atom_counts.astype(np.int64)),
            indices=indices,
            targets=None if targets is None else torch.from_numpy(np.asarray(targets[indices], np.float32)),
            features=None
            if features is None
            else torch.from_numpy(np.asarray(features[indices], np.float32)),
        )

    def iter_batches(
        self, indices: np.ndarray, batch_size: int, targets=None, features=None, max_edges: int | None = None
    ) -> Iterator[Batch]:
        for part in edge_capped_batches(indices, self.num_edges, batch_size, max_edges):
            yield self.batch(part, targets, features)

    # --- cache files --------------------------------------------------------------------------

    _ARRAYS = ("numbers", "atom_ptr", "src", "dst", "distances", "vectors", "images", "edge_ptr")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False)
        try:
            with handle:
                np.savez(handle, key=np.array(self.key), **{k: getattr(self, k) for k in self._ARRAYS})
            os.replace(handle.name, path)
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)

    @classmethod
    def load(cls, path: Path, key: str) -> GraphStore | None:
        """The cached store at ``path`` if its recorded key is ``key``; otherwise None."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                return cls(**{k: data[k] for k in cls._ARRAYS}, key=key)
        except Exception:
            return None  # unreadable or partial cache files are rebuilt, never trusted


def _build_chunk(args) -> tuple[list[CrystalGraph | None], list[tuple[int, str]]]:
    crystals, settings = args
    graphs: list[CrystalGraph | None] = []
    failures = []
    for position, crystal in crystals:
        try:
            graphs.append(build_graph(crystal, settings))
        except InvalidStructureError as error:
            graphs.append(None)
            failures.append((position, str(error)))
    return graphs, failures


def cache_key(structure_hash: str, settings: GraphSettings) -> str:
    payload = json.dumps(
        {"structures": structure_hash, "settings": settings.to_dict(), "version": GRAPH_FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def build_graph_store(
    crystals: Sequence[Crystal],
    settings: GraphSettings = GraphSettings(),
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    structure_hash: str | None = None,
) -> tuple[GraphStore, list[tuple[int, str]]]:
    """Build (or load from cache) the graphs of ``crystals``.

    Returns the store of the crystals that could be built, in order, and the failures as
    ``(position, message)``. The cache file's name and contents carry a key made of the
    structures' hash, every graph setting and the graph format version, so a stale cache is never used.
    Failures are cached too: the same crystals always give the same store.
    """
    crystals = list(crystals)
    key = ""
    cache_path = None
    if cache_dir is not None:
        if structure_hash is None:
            digest = hashlib.sha256()
            for c in crystals:
                for array in (c.numbers.astype(np.int64), c.lattice, c.frac_coords):
                    digest.update(np.ascontiguousarray(array).tobytes())
            structure_hash = digest.hexdigest()
        key = cache_key(structure_hash, settings)
        cache_path = Path(cache_dir) / f"graphs-{key[:24]}.npz"
        cached = GraphStore.load(cache_path, key)
        failure_path = cache_path.with_suffix(".failures.json")
        if cached is not None and failure_path.is_file():
            try:
                failures = [(int(p), str(m)) for p, m in json.loads(failure_path.read_text())]
            except (ValueError, TypeError):
                failures = None  # a corrupted failure list is rebuilt with the store, never trusted
            if failures is not None and len(cached) + len(failures) == len(crystals):
                return cached, failures

    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    indexed = list(enumerate(crystals))
    if workers <= 1 or len(crystals) < 64:
        graphs, failures = _build_chunk((indexed, settings))
    else:
        n_chunks = workers * 4
        chunks = [indexed[i::n_chunks] for i in range(n_chunks)]
        graphs = [None] * len(crystals)
        failures = []
        # fork: workers only run NumPy and pymatgen's compiled search, never torch
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            for chunk, (chunk_graphs, chunk_failures) in zip(
                chunks, pool.map(_build_chunk, [(c, settings) for c in chunks]), strict=True
            ):
                for (position, _), graph in zip(chunk, chunk_graphs, strict=True):
                    graphs[position] = graph
                failures.extend(chunk_failures)
        failures.sort()
    store = GraphStore.from_graphs([g for g in graphs if g is not None], key=key)
    if cache_path is not None:
        store.save(cache_path)
        cache_path.with_suffix(".failures.json").write_text(json.dumps(failures))
    return store, failures
