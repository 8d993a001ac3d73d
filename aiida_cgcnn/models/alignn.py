"""ALIGNN (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021) with scatter-based message passing.

Eqs. 5–10 of the hybridization paper (Gong et al., Sci. Adv. 2023) summarise it. One edge-gated
graph convolution updates atoms h and bonds e of a graph (Eqs. 5–7):

    m_ij  = A h_i + B h_j + C e_ij                                   (gate pre-activation)
    ê_ij  = σ(m_ij) / (Σ_k σ(m_ik) + 1e-6)                           (normalised gate)
    h_i  <- h_i  + SiLU(Norm(W_s h_i + Σ_j ê_ij ⊙ W_n h_j))
    e_ij <- e_ij + SiLU(Norm(m_ij))

with i the receiving atom (``dst``) and j the neighbour (``src``). An ALIGNN layer applies it to the
crystal graph (atoms, bonds), then to the line graph (bonds, angles t) with the freshly updated bonds
as nodes (Eqs. 8–10); after the ALIGNN layers, plain edge-gated layers update the crystal graph only.
Pooling, the hybrid descriptors and the output network are the shared
:class:`~aiida_cgcnn.models.heads.Head`.

Sums over neighbours are ``index_add_`` over ``dst``, gathers are ``index_select`` (whose backward is
an ``index_add_``, far cheaper on CPU than the accumulate-``index_put_`` behind ``x[index]``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..graph.batch import Batch
from ..graph.features import GaussianExpansion
from ..graph.line_graph import line_graph
from .alignn_ops import Norm, Workspace, dense_norm_silu, gated_edges
from .heads import Head, HeadOutput

__all__ = ["ALIGNN", "ALIGNNLayer", "Dense", "EdgeGatedConv", "Embedding", "rbf_expansion"]

NORMS = ("batch", "layer")
PRECISIONS = {"float32": None, "bfloat16-mixed": torch.bfloat16}
"""``precision`` settings: the type of the matrix products' factors (None: the weights' own)."""


def _linear(layer: nn.Linear, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``layer(x)``, with the product's factors in ``dtype`` (rounded; the result and the bias in
    ``x``'s type), or as is."""
    if dtype is None or dtype == x.dtype:
        return layer(x)
    out = nn.functional.linear(x.to(dtype), layer.weight.to(dtype)).to(x.dtype)
    return out if layer.bias is None else out + layer.bias


def _norm(kind: str, features: int) -> Norm:
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    raise ValueError(f"norm must be one of {NORMS}, not {kind!r}")


class Dense(nn.Module):
    """Linear, Norm, SiLU: ALIGNN's embedding block."""

    def __init__(self, in_features: int, out_features: int, norm: str = "batch"):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = _norm(norm, out_features)
        self.workspace_name = "dense"  # its arrays' label in a Workspace (set by ALIGNN)
        self.matmul_dtype: torch.dtype | None = None  # set by ALIGNN's precision

    def forward(self, x: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
        if workspace is None:
            return self.reference(x)
        y = _linear(self.linear, x, self.matmul_dtype)
        return dense_norm_silu(y, self.norm, workspace, self.workspace_name)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(self.norm(_linear(self.linear, x, self.matmul_dtype)))


class Embedding(nn.Module):
    """Radial basis expansion, then two :class:`Dense` blocks (to ``embedding`` and ``width`` features)."""

    def __init__(self, expansion: GaussianExpansion, embedding: int, width: int, norm: str = "batch"):
        super().__init__()
        self.expansion = expansion
        self.dense = nn.ModuleList(
            [Dense(expansion.out_features, embedding, norm), Dense(embedding, width, norm)]
        )

    def forward(self, x: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
        x = self.expansion(x)
        for layer in self.dense:
            x = layer(x, workspace)
        return x


def rbf_expansion(vmin: float, vmax: float, bins: int) -> GaussianExpansion:
    """ALIGNN's radial basis: ``bins`` Gaussians exp(-(x - μ_k)² / Δ) with centres from vmin to vmax
    and Δ their spacing (upstream's γ = 1/Δ, so the width is √Δ, not Δ)."""
    spacing = (vmax - vmin) / (bins - 1)
    return GaussianExpansion(vmin, vmax, spacing, width=math.sqrt(spacing))


class EdgeGatedConv(nn.Module):
    """Edge-gated graph convolution (Eqs. 5–7 for atoms and bonds; Eqs. 8–10 for bonds and angles).

    Parameters
    ----------
    features
        Width of node and edge vectors.
    norm
        ``"batch"`` (the paper) or ``"layer"`` (upstream's pure-PyTorch models).
    update_edges
        Return updated edge vectors; off where nothing reads them (the last layer of a stack),
        which skips their normalisation.
    """

    def __init__(self, features: int, norm: str = "batch", update_edges: bool = True):
        super().__init__()
        self.features = features
        # A, B, W_n and W_s of the equations as one matrix: one product over the nodes instead of four
        self.node_linear = nn.Linear(features, 4 * features)
        self.edge_linear = nn.Linear(features, features, bias=False)  # C (A and B carry the bias)
        self.norm_nodes = _norm(norm, features)
        self.norm_edges = _norm(norm, features) if update_edges else None
        self.workspace_name = "conv"  # its arrays' label in a Workspace (set by ALIGNN)
        self.matmul_dtype: torch.dtype | None = None  # set by ALIGNN's precision

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Updated node vectors ``h`` (n, F) and edge vectors ``e`` (m, F) (None if not updated).

        With a ``workspace`` the edge side runs as one autograd function
        (:func:`~aiida_cgcnn.models.alignn_ops.gated_edges`); otherwise as :meth:`reference`.
        """
        if workspace is None:
            return self.reference(h, e, src, dst)
        nodes = _linear(self.node_linear, h, self.matmul_dtype)
        gate_self, gate_neighbour, message, update_self = nodes.chunk(4, dim=1)
        numerator, denominator, *e_new = gated_edges(
            gate_self,
            gate_neighbour,
            message,
            e,
            self.edge_linear.weight,
            src,
            dst,
            self.norm_edges,
            workspace,
            self.workspace_name,
            self.matmul_dtype,
        )
        h = h + nn.functional.silu(self.norm_nodes(update_self + numerator / (denominator + 1e-6)))
        return h, (e_new[0] if e_new else None)

    def reference(
        self, h: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The equations as written, with autograd (the fused path is tested against this)."""
        nodes = _linear(self.node_linear, h, self.matmul_dtype)
        gate_self, gate_neighbour, message, update_self = nodes.chunk(4, dim=1)
        m = gate_self.index_select(0, dst) + gate_neighbour.index_select(0, src)
        m = m + _linear(self.edge_linear, e, self.matmul_dtype)
        sigma = torch.sigmoid(m)
        numerator = h.new_zeros(h.shape).index_add_(0, dst, sigma * message.index_select(0, src))
        denominator = h.new_zeros(h.shape).index_add_(0, dst, sigma)
        h = h + nn.functional.silu(self.norm_nodes(update_self + numerator / (denominator + 1e-6)))
        if self.norm_edges is None:
            return h, None
        return h, e + nn.functional.silu(self.norm_edges(m))


class ALIGNNLayer(nn.Module):
    """One ALIGNN layer: edge-gated convolution on the crystal graph, then on its line graph."""

    def __init__(self, features: int, norm: str = "batch", update_angles: bool = True):
        super().__init__()
        self.atom_conv = EdgeGatedConv(features, norm)
        self.bond_conv = EdgeGatedConv(features, norm, update_edges=update_angles)

    def forward(self, h, e, t, src, dst, line_src, line_dst, workspace=None):
        h, bonds = self.atom_conv(h, e, src, dst, workspace)
        e, t = self.bond_conv(bonds, t, line_src, line_dst, workspace)
        return h, e, t


class ALIGNN(nn.Module):
    """Atomistic line graph neural network: embeddings, ALIGNN layers, edge-gated layers, a :class:`Head`.

    Parameters
    ----------
    atom_table
        Atom feature table indexed by atomic number (CGCNN's Table II; saved with the weights).
    out_features
        Number of targets (regression) or classes (classification).
    alignn_layers, gcn_layers
        ALIGNN layers (crystal graph + line graph), then edge-gated layers on the crystal graph
        (paper: 4 and 4).
    hidden_features, embedding_features
        Width of atom, bond and angle vectors (256), and of the bond/angle embedding's first layer (64).
    edge_bins, cutoff, angle_bins
        Radial basis of bond lengths (80 centres from 0 to ``cutoff`` = 8 Å) and of bond-angle cosines
        (40 centres from −1 to 1).
    norm
        ``"batch"`` (paper) or ``"layer"``.
    precision
        ``"float32"``, or ``"bfloat16-mixed"``: the matrix products of the embeddings and
        convolutions (forward and backward) take bfloat16 factors and accumulate in float32; weights,
        sums over neighbours, normalisation, activations, pooling and the head stay float32. Products
        4.4× faster on a CPU with AVX-512 BF16 (one core), epochs about 2×; see the ALIGNN docs.
    backtracking
        Line-graph pairs of a bond with its own reverse (see :mod:`~aiida_cgcnn.graph.line_graph`).
    pooling, h_fea_len, n_h, extra_features, classification, dropout
        The shared :class:`~aiida_cgcnn.models.heads.Head`; ``extra_features`` > 0 is de-ALIGNN
        (descriptors joined to the pooled vector).
    """

    atom_table: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(
        self,
        atom_table: torch.Tensor,
        out_features: int = 1,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        hidden_features: int = 256,
        embedding_features: int = 64,
        edge_bins: int = 80,
        cutoff: float = 8.0,
        angle_bins: int = 40,
        norm: str = "batch",
        precision: str = "float32",
        backtracking: bool = True,
        pooling: str = "mean",
        h_fea_len: int = 256,
        n_h: int = 1,
        extra_features: int = 0,
        classification: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        self.register_buffer("atom_table", atom_table.clone().float())
        self.backtracking = backtracking
        self.precision = precision
        width = hidden_features
        self.atom_embedding = Dense(atom_table.shape[1], width, norm)
        self.bond_embedding = Embedding(
            rbf_expansion(0.0, cutoff, edge_bins), embedding_features, width, norm
        )
        self.angle_embedding = Embedding(
            rbf_expansion(-1.0, 1.0, angle_bins), embedding_features, width, norm
        )
        # angles are read by the next ALIGNN layer only; bonds by the next layer of either kind
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(width, norm, update_angles=k < alignn_layers - 1) for k in range(alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedConv(width, norm, update_edges=k < gcn_layers - 1) for k in range(gcn_layers)
        )
        self.head = Head(
            width, out_features, pooling, h_fea_len, n_h, extra_features, classification, dropout
        )
        self.workspace: Workspace | None = Workspace()  # None: every layer takes its reference path
        for name, module in self.named_modules():
            if isinstance(module, (Dense, EdgeGatedConv)):
                module.workspace_name = name
                module.matmul_dtype = PRECISIONS[precision]

    def atom_vectors(self, batch: Batch) -> torch.Tensor:
        """The final atom vectors (n, hidden_features) of a batch."""
        src, dst = batch.src, batch.dst
        workspace = self.workspace
        h = self.atom_embedding(self.atom_table[batch.numbers], workspace)
        e = self.bond_embedding(batch.distances, workspace)
        if len(self.alignn_layers):
            lines = line_graph(src, dst, batch.vectors, batch.numbers.shape[0], self.backtracking)
            t = self.angle_embedding(lines.cosines, workspace)
            for layer in self.alignn_layers:
                h, e, t = layer(h, e, t, src, dst, lines.src, lines.dst, workspace)
        for conv in self.gcn_layers:
            h, e = conv(h, e, src, dst, workspace)
        return h

    def forward(self, batch: Batch) -> HeadOutput:
        return self.head(self.atom_vectors(batch), batch.crystal_index, batch.num_atoms, batch.features)
