"""Training throughput (crystals per second per epoch): aiida-cgcnn against a padded baseline.

The baseline follows the CGCNN reference design, written here from its description: every atom has
exactly 12 neighbour slots (padded), features are gathered into (atoms, 12, features) tensors,
batches are collated by a Python loop over crystals, and pooling loops over crystals in the
forward pass. Both models have the reference's sizes (64, 3 convolutions, 128, 1 hidden layer),
the same optimizer and batch size, and run on the same structures in the same process.

    python benchmarks/bench_training.py [--n 2000] [--epochs 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import load, write_results
from torch import nn

from aiida_cgcnn.graph.batch import build_graph_store
from aiida_cgcnn.graph.crystal_graph import GraphSettings
from aiida_cgcnn.graph.features import GaussianExpansion, atom_feature_table
from aiida_cgcnn.models.registry import build_model


class PaddedConv(nn.Module):
    def __init__(self, atom_fea_len: int, nbr_fea_len: int):
        super().__init__()
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def forward(self, atom_in, nbr_fea, nbr_idx):
        n, m = nbr_idx.shape
        atom_nbr = atom_in[nbr_idx, :]
        total = torch.cat([atom_in.unsqueeze(1).expand(n, m, -1), atom_nbr, nbr_fea], dim=2)
        gated = self.bn1(self.fc_full(total).view(n * m, -1)).view(n, m, -1)
        nbr_filter, nbr_core = gated.chunk(2, dim=2)
        summed = self.bn2(torch.sum(torch.sigmoid(nbr_filter) * nn.functional.softplus(nbr_core), dim=1))
        return nn.functional.softplus(atom_in + summed)


class PaddedCGCNN(nn.Module):
    def __init__(self, orig_len: int, nbr_len: int, atom_fea_len=64, n_conv=3, h_fea_len=128):
        super().__init__()
        self.embedding = nn.Linear(orig_len, atom_fea_len)
        self.convs = nn.ModuleList(PaddedConv(atom_fea_len, nbr_len) for _ in range(n_conv))
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.fc_out = nn.Linear(h_fea_len, 1)

    def forward(self, atom_fea, nbr_fea, nbr_idx, crystal_atom_idx):
        v = self.embedding(atom_fea)
        for conv in self.convs:
            v = conv(v, nbr_fea, nbr_idx)
        pooled = torch.stack([v[idx].mean(dim=0) for idx in crystal_atom_idx])
        h = nn.functional.softplus(self.conv_to_fc(nn.functional.softplus(pooled)))
        return self.fc_out(h)


def padded_items(store, table, expansion):
    """Per-crystal padded tensors, precomputed once (the baseline's dataset after its cache is warm)."""
    items = []
    for k in range(len(store)):
        g = store.graph(k)
        n = g.num_atoms
        idx = np.zeros((n, 12), dtype=np.int64)
        dist = np.full((n, 12), 9.0, dtype=np.float32)
        for atom in range(n):
            mask = g.dst == atom
            nbrs, d = g.src[mask][:12], g.distances[mask][:12]
            idx[atom, : len(nbrs)] = nbrs
            dist[atom, : len(d)] = d
        with torch.no_grad():
            items.append(
                (
                    table[torch.from_numpy(g.numbers.astype(np.int64))],
                    expansion(torch.from_numpy(dist)),
                    torch.from_numpy(idx),
                )
            )
    return items


def collate(items, targets):
    atom_fea, nbr_fea, nbr_idx, crystal_atom_idx = [], [], [], []
    base = 0
    for atoms, nbr, idx in items:  # the reference's per-crystal collate loop
        n = atoms.shape[0]
        atom_fea.append(atoms)
        nbr_fea.append(nbr)
        nbr_idx.append(idx + base)
        crystal_atom_idx.append(torch.arange(n) + base)
        base += n
    return (
        torch.cat(atom_fea),
        torch.cat(nbr_fea),
        torch.cat(nbr_idx),
        crystal_atom_idx,
        torch.as_tensor(np.asarray(targets), dtype=torch.float32).view(-1, 1),
    )


def epoch_ours(model, store, targets, order, batch_size, device, optimizer):
    model.train()
    for start in range(0, len(order), batch_size):
        batch = store.batch(order[start : start + batch_size], targets).to(device)
        loss = nn.functional.mse_loss(model(batch).prediction, batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def epoch_padded(model, items, targets, order, batch_size, device, optimizer):
    model.train()
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        atom_fea, nbr_fea, nbr_idx, crystal_idx, y = collate([items[i] for i in chosen], targets[chosen])
        out = model(
            atom_fea.to(device), nbr_fea.to(device), nbr_idx.to(device), [c.to(device) for c in crystal_idx]
        )
        loss = nn.functional.mse_loss(out, y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def timed(function, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mp_log10_K")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    dataset = load(args.dataset, limit=args.n)
    store, _ = build_graph_store(list(dataset.crystals()), GraphSettings(), workers=1)
    targets = dataset.targets.astype(np.float32)
    table = atom_feature_table()
    expansion = GaussianExpansion()
    items = padded_items(store, table, expansion)
    ours = build_model({"architecture": "cgcnn", "out_features": 1}, table).to(device)
    padded = PaddedCGCNN(table.shape[1], expansion.out_features).to(device)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3)
    opt_padded = torch.optim.Adam(padded.parameters(), lr=1e-3)
    n = len(dataset)
    times_ours, times_padded = [], []
    for epoch in range(args.epochs + 1):  # epoch 0 warms up
        order = np.random.default_rng(epoch).permutation(n)
        t_padded = timed(
            lambda order=order: epoch_padded(
                padded, items, targets, order, args.batch_size, device, opt_padded
            ),
            device,
        )
        t_ours = timed(
            lambda order=order: epoch_ours(ours, store, targets, order, args.batch_size, device, opt_ours),
            device,
        )
        if epoch:
            times_ours.append(t_ours)
            times_padded.append(t_padded)
    rate_ours = n / np.median(times_ours)
    rate_padded = n / np.median(times_padded)
    edges_ours = len(store.src)
    print(
        f"{n} structures of {args.dataset} ({dataset.num_atoms.mean():.1f} atoms mean), batch "
        f"{args.batch_size}, device {device}"
    )
    print(f"edges: ours {edges_ours} (ties kept, no padding), padded baseline {12 * dataset.num_atoms.sum()}")
    print(f"padded baseline: {rate_padded:8.0f} crystals/s per epoch")
    print(f"aiida-cgcnn:     {rate_ours:8.0f} crystals/s per epoch   ratio {rate_ours / rate_padded:.2f}x")
    write_results(
        f"training_{device.type}",
        {
            "dataset": args.dataset,
            "structures": n,
            "batch_size": args.batch_size,
            "device": str(device),
            "epochs_timed": args.epochs,
            "crystals_per_s_ours": rate_ours,
            "crystals_per_s_padded": rate_padded,
            "ratio": rate_ours / rate_padded,
            "edges_ours": edges_ours,
            "edges_padded": int(12 * dataset.num_atoms.sum()),
        },
    )


if __name__ == "__main__":
    main()
