"""The line graph of a crystal graph (ALIGNN): bonds as nodes, bond pairs sharing an atom as edges.

Crystal-graph edges point from neighbour ``a`` (``src``) to centre ``b`` (``dst``) and carry
``vectors`` = position of ``a``'s image minus position of ``b``. A line-graph edge joins bond
``e1 = a→b`` to bond ``e2 = b→c`` whenever ``dst(e1) == src(e2)``: the message of e1 flows into e2,
through the atom ``b`` they share, and the edge feature is the cosine of the bond angle a–b–c::

    cos θ_abc = (r_a − r_b)·(r_c − r_b) / (|r_a − r_b| |r_c − r_b|) = −vec(e1)·vec(e2) / (|e1| |e2|),

clamped to [−1, 1] against rounding. This is upstream ALIGNN's directed line graph (DGL's
``line_graph``): bond b→c hears about every bond that ends at its source atom b, so each ALIGNN
layer reaches the second shell of bonds, as Eq. 10 of the hybridization paper describes.

Backtracking pairs
------------------
The pair ``e1 = c→b``, ``e2 = b→c`` (the reverse bond, same periodic image, cos = 1) is included by
default, as upstream does: the reverse bond's state is information (it differs from e2's own, because
the gate of a bond depends on its direction) and the accuracy upstream reports was obtained with it.
With ``backtracking=False`` those pairs, and only those (a different image of the same atom forms a
real angle and stays), are left out; that saves one line-graph edge per bond whose reverse exists.

Why per batch, and not cached
-----------------------------
A crystal with E bonds of degree k has about k·E line-graph edges (12× the crystal graph): cached
on disk it would be an order of magnitude larger than the graph cache, while building it for a batch
is a handful of vectorised operations (sort, repeat, gather) that cost well under 1% of ALIGNN's
forward and backward pass (0.03-0.1% on one CPU thread at the paper's sizes; see
``docs/alignn.md``). So ALIGNN builds it for each batch, on the batch's device,
and nothing else (CGCNN) ever pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LineGraph", "line_graph", "line_graph_sizes"]

#: Two bond vectors summing to less than this (Å) are one bond and its reverse (atoms are > 0.1 Å apart).
_REVERSE_TOLERANCE = 1e-3


@dataclass
class LineGraph:
    """Line graph of a (batch of) crystal graph(s); indices refer to the crystal graph's edges.

    ``src[k]`` is the bond a→b whose message flows into bond ``dst[k]`` = b→c; ``cosines[k]`` is
    cos θ_abc. Edges are grouped by ``dst`` (all messages into one bond are contiguous).
    """

    src: torch.Tensor  # (L,) long
    dst: torch.Tensor  # (L,) long
    cosines: torch.Tensor  # (L,) float

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def line_graph(
    src: torch.Tensor,
    dst: torch.Tensor,
    vectors: torch.Tensor,
    num_atoms: int | None = None,
    backtracking: bool = True,
) -> LineGraph:
    """Build the line graph of a crystal graph, vectorised (no loop over bonds or atoms).

    Parameters
    ----------
    src, dst
        (E,) neighbour and centre atom of each bond, as in :class:`~aiida_cgcnn.graph.batch.Batch`.
    vectors
        (E, 3) neighbour image minus centre, Å.
    num_atoms
        Number of atoms (default: inferred from the indices).
    backtracking
        Keep the pairs of a bond with its own reverse (cos = 1); see the module docstring.

    Returns
    -------
    LineGraph
        For every bond e2 = b→c, one edge from each bond e1 = a→b ending at b.
    """
    device = src.device
    num_bonds = int(src.shape[0])
    if num_atoms is None:
        num_atoms = int(torch.maximum(src.max(), dst.max()).item()) + 1 if num_bonds else 0
    # bonds grouped by the atom they end at; the stable sort keeps the given order within a group
    by_centre = torch.argsort(dst, stable=True)
    in_degree = torch.bincount(dst, minlength=num_atoms)
    first = torch.cumsum(in_degree, 0) - in_degree
    # bond e2 = b→c receives from the in_degree[b] bonds ending at its source atom b
    counts = in_degree[src]
    total = int(counts.sum().item())
    lg_dst = torch.repeat_interleave(torch.arange(num_bonds, device=device), counts, output_size=total)
    block_start = torch.cumsum(counts, 0) - counts
    within = torch.arange(total, device=device) - torch.repeat_interleave(
        block_start, counts, output_size=total
    )
    position = torch.repeat_interleave(first[src], counts, output_size=total) + within
    lg_src = by_centre[position]
    if not backtracking:
        reverse = (src[lg_src] == dst[lg_dst]) & (
            (vectors[lg_src] + vectors[lg_dst]).abs().amax(dim=-1) < _REVERSE_TOLERANCE
        )
        keep = ~reverse
        lg_src, lg_dst = lg_src[keep], lg_dst[keep]
    unit = vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    # e1 points from b to a, e2 from c to b: the angle at b is between e1 and −e2
    cosines = -(unit[lg_src] * unit[lg_dst]).sum(dim=-1)
    return LineGraph(lg_src, lg_dst, cosines.clamp(-1.0, 1.0))


def line_graph_sizes(
    src: np.ndarray, dst: np.ndarray, edge_ptr: np.ndarray, atom_ptr: np.ndarray
) -> np.ndarray:
    """Line-graph edges (backtracking included) of each crystal of a store, without building them.

    ``src``/``dst`` are crystal-local atom indices, ``edge_ptr``/``atom_ptr`` the store's CSR offsets
    (:class:`~aiida_cgcnn.graph.batch.GraphStore`). Bond b→c has in_degree(b) incoming pairs.
    """
    num_edges = np.diff(edge_ptr)
    crystal_of_edge = np.repeat(np.arange(len(num_edges)), num_edges)
    offset = atom_ptr[:-1][crystal_of_edge]
    in_degree = np.bincount(dst.astype(np.int64) + offset, minlength=int(atom_ptr[-1]))
    per_bond = in_degree[src.astype(np.int64) + offset]
    return np.bincount(crystal_of_edge, weights=per_bond, minlength=len(num_edges)).astype(np.int64)
