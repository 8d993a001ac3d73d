"""Readout heads shared by every encoder: pooling, optional extra features, output network.

Pooling
-------
``mean``
    Average the atom vectors, then the output network (intensive; supercell invariant).
``sum``
    Output network on every atom, then sum the per-atom outputs: exactly extensive (a supercell of
    n cells predicts exactly n times the value) and exposes per-site contributions.
``site``
    Output network on every atom, then average (Eqs. S14-S15 of the CGCNN supplement); exposes
    per-site contributions that average to the prediction.
``sum-vector``
    Sum the atom vectors, then the output network: the hybridization paper's sum pooling. More
    expressive than ``mean`` for extensive targets but not exactly extensive.

Extra per-structure features (the hybrid models' descriptors) are concatenated to the pooled
vector (``mean``, ``sum-vector``) or to every atom vector (``sum``, ``site``) before the output
network. Targets are standardised inside the head (buffers saved with the weights), so a model
outputs physical units and a checkpoint needs no separate normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["POOLINGS", "Head", "HeadOutput", "scatter_mean", "scatter_sum"]

POOLINGS = ("mean", "sum", "site", "sum-vector")


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = values.new_zeros((size, *values.shape[1:]))
    return out.index_add_(0, index, values)


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int, counts: torch.Tensor) -> torch.Tensor:
    total = scatter_sum(values, index, size)
    return total / counts.clamp(min=1).to(values.dtype).view(-1, *([1] * (values.dim() - 1)))


@dataclass
class HeadOutput:
    """Predictions in physical units (regression) or logits (classification).

    ``site`` holds the per-atom contributions for ``sum`` and ``site`` pooling (else None).
    """

    prediction: torch.Tensor  # (B, T) or (B, C)
    site: torch.Tensor | None = None  # (n, T)
    crystal_vector: torch.Tensor | None = None  # (B, h) pooled vector the output network saw


class Head(nn.Module):
    """Pooling + extra features + output network (Linear-softplus, hidden layers, Linear).

    Parameters
    ----------
    in_features
        Size of the encoder's atom vectors.
    out_features
        Number of targets (regression) or classes (classification).
    pooling
        One of :data:`POOLINGS`.
    h_fea_len, n_h
        Width and number of hidden layers of the output network (reference: 128 and 1).
    extra_features
        Size of the per-structure feature vector concatenated before the output network.
    classification
        Output logits; no target standardisation.
    dropout
        Dropout before the output layer.
    input_activation
        Softplus on the pooled (or per-atom) vector before the extra features join it.
    """

    # buffers (register_buffer), declared: the type checker sees Module attributes as Tensor | Module
    target_mean: torch.Tensor
    target_std: torch.Tensor
    extra_mean: torch.Tensor
    extra_std: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        pooling: str = "mean",
        h_fea_len: int = 128,
        n_h: int = 1,
        extra_features: int = 0,
        classification: bool = False,
        dropout: float = 0.0,
        input_activation: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.classification = classification
        self.extra_features = extra_features
        # CGCNN's reference applies softplus to the pooled vector before its first dense layer
        self.activation_in = nn.Softplus() if input_activation else nn.Identity()
        layers: list[nn.Module] = [nn.Linear(in_features + extra_features, h_fea_len), nn.Softplus()]
        for _ in range(n_h - 1):
            layers += [nn.Linear(h_fea_len, h_fea_len), nn.Softplus()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(h_fea_len, out_features)
        # target standardisation: per structure for mean/site/sum-vector, per atom for sum
        self.register_buffer("target_mean", torch.zeros(out_features))
        self.register_buffer("target_std", torch.ones(out_features))
        self.register_buffer("extra_mean", torch.zeros(extra_features))
        self.register_buffer("extra_std", torch.ones(extra_features))

    @property
    def per_site(self) -> bool:
        return self.pooling in ("sum", "site")

    def set_normalisation(
        self,
        target_mean: torch.Tensor | None = None,
        target_std: torch.Tensor | None = None,
        extra_mean: torch.Tensor | None = None,
        extra_std: torch.Tensor | None = None,
    ) -> None:
        for name, value in (
            ("target_mean", target_mean),
            ("target_std", target_std),
            ("extra_mean", extra_mean),
            ("extra_std", extra_std),
        ):
            if value is not None:
                getattr(self, name).copy_(torch.as_tensor(value, dtype=getattr(self, name).dtype))

    def _denormalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return x
        return x * self.target_std + self.target_mean

    def forward(
        self,
        atom_vectors: torch.Tensor,
        crystal_index: torch.Tensor,
        num_atoms: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> HeadOutput:
        size = num_atoms.shape[0]
        standardised = None  # the extra features, when this model takes them
        if self.extra_features:
            if extra is None or extra.shape[-1] != self.extra_features:
                raise ValueError(f"this model needs {self.extra_features} extra features per structure")
            standardised = (extra - self.extra_mean) / self.extra_std
        if self.per_site:
            x = self.activation_in(atom_vectors)
            if standardised is not None:
                x = torch.cat([x, standardised.index_select(0, crystal_index)], dim=-1)
            site = self._denormalise(self.out(self.hidden(x)))
            if self.pooling == "sum":
                prediction = scatter_sum(site, crystal_index, size)
            else:
                prediction = scatter_mean(site, crystal_index, size, num_atoms)
            return HeadOutput(prediction, site, None)
        if self.pooling == "mean":
            pooled = scatter_mean(atom_vectors, crystal_index, size, num_atoms)
        else:
            pooled = scatter_sum(atom_vectors, crystal_index, size)
        pooled = self.activation_in(pooled)
        if standardised is not None:
            pooled = torch.cat([pooled, standardised], dim=-1)
        return HeadOutput(self._denormalise(self.out(self.hidden(pooled))), None, pooled)
