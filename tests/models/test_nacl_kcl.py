"""The supplement's illustrative example (Eqs. S1-S10): one Eq. 4 convolution plus mean pooling tells
NaCl (8-atom rock-salt cell) from KCl (CsCl structure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aiida_cgcnn.graph.batch import GraphStore
from aiida_cgcnn.graph.crystal_graph import GraphSettings, build_graph
from aiida_cgcnn.models.cgcnn import SimpleConv
from aiida_cgcnn.models.heads import scatter_mean
from tests.builders import cscl, rocksalt_conventional, rocksalt_primitive

# Eq. S1: v_Cl = (1 0 0), v_Na = (0 1 0), v_K = (0 0 1)
ONE_HOT = {17: [1.0, 0.0, 0.0], 11: [0.0, 1.0, 0.0], 19: [0.0, 0.0, 1.0]}
NA, CL, K = 11, 17, 19


def graphs():
    nacl = build_graph(rocksalt_conventional(NA, CL, a=5.64, sid="NaCl"), GraphSettings(radius=3.0))
    kcl = build_graph(cscl(K, CL, a=3.78, sid="KCl"), GraphSettings(radius=3.5))
    return nacl, kcl


def conv_with(w_c, w_s) -> SimpleConv:
    # Eq. S2 weights, b = 0, g(x) = x, no bond features
    conv = SimpleConv(atom_fea_len=3, edge_fea_len=0, out_len=1, activation=nn.Identity())
    with torch.no_grad():
        conv.W_c.weight.copy_(torch.tensor(np.asarray(w_c, dtype=np.float32)[None, :]))
        conv.W_s.weight.copy_(torch.tensor(np.asarray(w_s, dtype=np.float32)[None, :]))
        conv.W_s.bias.zero_()
    return conv


def run(conv):
    """Node values after one convolution, and mean-pooled crystal values, for [NaCl, KCl]."""
    store = GraphStore.from_graphs(list(graphs()))
    batch = store.batch(np.arange(2))
    v = torch.tensor([ONE_HOT[int(z)] for z in batch.numbers])
    u = torch.zeros(batch.src.shape[0], 0)
    with torch.no_grad():
        nodes = conv(v, u, batch.src, batch.dst)
        pooled = scatter_mean(nodes, batch.crystal_index, 2, batch.num_atoms)
    return batch, nodes[:, 0].double(), pooled[:, 0].double()


def test_graphs_keep_only_the_first_shell():
    nacl, kcl = graphs()
    assert nacl.num_atoms == 8 and kcl.num_atoms == 2
    assert np.all(np.bincount(nacl.dst) == 6)
    assert np.all(np.bincount(kcl.dst) == 8)
    # neighbours are always the other element
    for g in (nacl, kcl):
        assert np.all(g.numbers[g.src] != g.numbers[g.dst])


@pytest.mark.parametrize("seed", range(5))
def test_node_and_pooled_values_follow_eqs_s3_to_s10(seed):
    rng = np.random.default_rng(seed)
    w_c1, w_c2, w_c3, w_s1, w_s2, w_s3 = rng.normal(size=6)
    batch, nodes, pooled = run(conv_with([w_c1, w_c2, w_c3], [w_s1, w_s2, w_s3]))
    numbers = batch.numbers.numpy()
    in_nacl = batch.crystal_index.numpy() == 0
    expected = {
        ("NaCl", NA): 6 * w_c1 + w_s2,  # Eq. S3
        ("NaCl", CL): 6 * w_c2 + w_s1,  # Eq. S4
        ("KCl", K): 8 * w_c1 + w_s3,  # Eq. S5
        ("KCl", CL): 8 * w_c3 + w_s1,  # Eq. S6
    }
    for (name, z), value in expected.items():
        mask = (numbers == z) & (in_nacl if name == "NaCl" else ~in_nacl)
        assert mask.sum() == (4 if name == "NaCl" else 1)
        np.testing.assert_allclose(nodes.numpy()[mask], value, rtol=1e-5, atol=1e-5)
    # Eqs. S7-S10: mean pooling over the 8 (NaCl) and 2 (KCl) nodes, no output layer
    y_nacl = 3 * w_c1 + 3 * w_c2 + 0.5 * w_s1 + 0.5 * w_s2
    y_kcl = 4 * w_c1 + 4 * w_c3 + 0.5 * w_s1 + 0.5 * w_s3
    np.testing.assert_allclose(pooled.numpy(), [y_nacl, y_kcl], rtol=1e-5, atol=1e-5)


def test_weights_exist_that_tell_nacl_from_kcl():
    # y = A w with w = (w_c1, w_c2, w_c3, w_s1, w_s2, w_s3): solve A w = (+1, -1)
    A = np.array([[3, 3, 0, 0.5, 0.5, 0], [4, 0, 4, 0.5, 0, 0.5]])
    w, *_ = np.linalg.lstsq(A, np.array([1.0, -1.0]), rcond=None)
    np.testing.assert_allclose(A @ w, [1, -1], atol=1e-12)
    _, _, pooled = run(conv_with(w[:3], w[3:]))
    np.testing.assert_allclose(pooled.numpy(), [1.0, -1.0], atol=1e-5)
    # and the opposite labels are reachable too
    w2, *_ = np.linalg.lstsq(A, np.array([-1.0, 1.0]), rcond=None)
    np.testing.assert_allclose(run(conv_with(w2[:3], w2[3:]))[2].numpy(), [-1.0, 1.0], atol=1e-5)


def test_choice_of_unit_cell_does_not_matter():
    # "we use this eight-node crystal graph to illustrate that CGCNN is invariant to the choice of
    # unit cells": the 2-atom primitive cell gives the same pooled value
    rng = np.random.default_rng(7)
    conv = conv_with(rng.normal(size=3), rng.normal(size=3))
    _, _, pooled = run(conv)
    primitive = build_graph(rocksalt_primitive(NA, CL, a=5.64), GraphSettings(radius=3.0))
    batch = GraphStore.from_graphs([primitive]).batch(np.arange(1))
    v = torch.tensor([ONE_HOT[int(z)] for z in batch.numbers])
    with torch.no_grad():
        nodes = conv(v, torch.zeros(batch.src.shape[0], 0), batch.src, batch.dst)
        value = scatter_mean(nodes, batch.crystal_index, 1, batch.num_atoms)
    np.testing.assert_allclose(value.double().numpy()[0, 0], pooled.numpy()[0], rtol=1e-5, atol=1e-6)
