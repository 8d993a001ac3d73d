"""Readout heads (mean / sum / site / sum-vector, classification) through the Predictor, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_cgcnn.graph.crystal_graph import GraphSettings
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.models import CGCNN, POOLINGS, Head, build_model
from aiida_cgcnn.models.heads import scatter_mean, scatter_sum
from tests.builders import (
    bcc_primitive,
    cscl,
    fcc_primitive,
    rocksalt_conventional,
    rocksalt_primitive,
    supercell,
)
from tests.models.helpers import batch_of, predictor_of, small_model


def structures():
    return [
        rocksalt_primitive(sid="NaCl"),
        cscl(sid="KCl"),
        bcc_primitive(sid="Fe"),
        rocksalt_conventional(11, 9, a=4.63, sid="NaF"),
        fcc_primitive(sid="Cu"),
    ]


def test_scatter_sum_and_mean():
    values = torch.tensor([[1.0], [2.0], [3.0], [10.0]])
    index = torch.tensor([0, 0, 2, 2])
    torch.testing.assert_close(scatter_sum(values, index, 3), torch.tensor([[3.0], [0.0], [13.0]]))
    counts = torch.tensor([2, 0, 2])
    torch.testing.assert_close(scatter_mean(values, index, 3, counts), torch.tensor([[1.5], [0.0], [6.5]]))


def test_site_pooling_contributions_average_to_the_prediction():
    model = small_model(pooling="site", warm_batch=batch_of(structures()))
    result = predictor_of(model).predict(structures())
    assert result.ids == ["NaCl", "KCl", "Fe", "NaF", "Cu"]
    assert result.site_values is not None
    assert [len(s) for s in result.site_values] == [2, 2, 1, 8, 1]
    for values, sites in zip(result.values, result.site_values, strict=True):
        np.testing.assert_allclose(sites.mean(axis=0), values, rtol=1e-6, atol=1e-6)
    # the contributions are not all the same: NaCl's Na and Cl sites differ
    assert abs(result.site_values[0][0, 0] - result.site_values[0][1, 0]) > 1e-4


def test_sum_pooling_contributions_sum_to_the_prediction():
    model = small_model(pooling="sum", warm_batch=batch_of(structures()))
    result = predictor_of(model).predict(structures())
    for values, sites in zip(result.values, result.site_values, strict=True):
        np.testing.assert_allclose(sites.sum(axis=0), values, rtol=1e-6, atol=1e-6)
    # in a supercell, each site contributes what its image in the cell does
    big = predictor_of(model).predict([supercell(structures()[0], (2, 2, 1))])
    np.testing.assert_allclose(
        big.site_values[0], np.tile(result.site_values[0], (4, 1)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("pooling", ["mean", "sum-vector"])
def test_pooled_heads_have_no_site_values(pooling):
    model = small_model(pooling=pooling)
    result = predictor_of(model).predict(structures(), return_vectors=True)
    assert result.site_values is None
    assert result.values.shape == (5, 1)
    assert np.all(np.isfinite(result.values))
    assert result.crystal_vectors.shape == (5, 16)


def test_multi_target_regression_shapes():
    model = small_model(out_features=3, pooling="site")
    result = predictor_of(model).predict(structures())
    assert result.values.shape == (5, 3)
    assert [s.shape for s in result.site_values] == [(2, 3), (2, 3), (1, 3), (8, 3), (1, 3)]


def test_target_standardisation_is_undone_in_the_output():
    model = small_model(pooling="mean")
    batch = batch_of(structures())
    with torch.no_grad():
        before = model(batch).prediction
        model.head.set_normalisation(torch.tensor([10.0]), torch.tensor([2.0]))
        after = model(batch).prediction
    # prediction = raw * std + mean, with (mean, std) going from (1.5, 0.7) to (10, 2)
    raw = (before - 1.5) / 0.7
    torch.testing.assert_close(after, raw * 2.0 + 10.0, rtol=1e-5, atol=1e-5)


def test_classification_three_classes_gives_probabilities():
    model = small_model(classification=True, out_features=3)
    predictor = predictor_of(model, task="classification", classes=("metal", "semiconductor", "insulator"))
    result = predictor.predict(structures())
    assert result.values.shape == (5, 3)
    assert np.all(result.values >= 0)
    np.testing.assert_allclose(result.values.sum(axis=1), 1.0, rtol=1e-6)
    assert result.labels.shape == (5,)
    assert set(result.labels.tolist()) <= {0, 1, 2}
    # probabilities are the softmax of the model's logits
    with torch.no_grad():
        logits = model(batch_of(structures())).prediction
    np.testing.assert_allclose(result.values, torch.softmax(logits, -1).numpy(), rtol=1e-5, atol=1e-6)


def test_predictor_keeps_input_order_and_skips_invalid_when_asked():
    from aiida_cgcnn.errors import InvalidStructureError
    from tests.builders import crystal

    model = small_model()
    predictor = predictor_of(model)
    items = structures()
    lonely = crystal("lonely", 20 * np.eye(3), [[0, 0, 0]], [29])
    mixed = [items[0], lonely, items[1]]
    with pytest.raises(InvalidStructureError, match="lonely"):
        predictor.predict(mixed)
    result = predictor.predict(mixed, skip_invalid=True)
    assert result.ids == ["NaCl", "KCl"]
    assert [s.id for s in result.skipped] == ["lonely"]
    alone = predictor.predict([items[1], items[0]])
    np.testing.assert_allclose(result.values[[1, 0]], alone.values, rtol=1e-6)


def test_simple_conv_eq4_matches_a_loop(rng):
    """Eq. 4: v_i <- g[(sum_j v_j + u_ij) W_c + v_i W_s + b], here with g = softplus."""
    from aiida_cgcnn.models.cgcnn import SimpleConv

    torch.manual_seed(0)
    batch = batch_of(structures())
    conv = SimpleConv(5, 4)
    n = int(batch.numbers.shape[0])
    v = torch.randn(n, 5)
    u = torch.randn(int(batch.src.shape[0]), 4)
    out = conv(v, u, batch.src, batch.dst)
    expected = torch.empty_like(out)
    for i in range(n):
        edges = (batch.dst == i).nonzero().flatten()
        neighbours = sum(torch.cat([v[batch.src[e]], u[e]]) for e in edges)
        expected[i] = torch.nn.functional.softplus(conv.W_c(neighbours) + conv.W_s(v[i]))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_gated_conv_eq5_matches_a_loop():
    """Eq. 5 with batch norm (eval mode): v_i + sum_j sigma(z W_f + b_f) * g(z W_s + b_s),
    z = v_i (+) v_j (+) u_ij."""
    from aiida_cgcnn.models.cgcnn import GatedConv

    torch.manual_seed(0)
    batch = batch_of(structures())
    conv = GatedConv(4, 3)
    with torch.no_grad():  # non-trivial running statistics
        for bn in (conv.bn_edges, conv.bn_nodes):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    conv.eval()
    n = int(batch.numbers.shape[0])
    v = torch.randn(n, 4)
    u = torch.randn(int(batch.src.shape[0]), 3)
    with torch.no_grad():
        out = conv(v, u, batch.src, batch.dst)

    def bn(layer, x):
        return (x - layer.running_mean) / torch.sqrt(
            layer.running_var + layer.eps
        ) * layer.weight + layer.bias

    softplus = torch.nn.functional.softplus
    expected = torch.empty_like(out)
    with torch.no_grad():
        for i in range(n):
            total = torch.zeros(4)
            for e in (batch.dst == i).nonzero().flatten():
                z = torch.cat([v[i], v[batch.src[e]], u[e]])
                pre = bn(conv.bn_edges, conv.fc_full(z))
                total += torch.sigmoid(pre[:4]) * softplus(pre[4:])
            expected[i] = softplus(v[i] + bn(conv.bn_nodes, total))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_simple_conv_model_trains_a_step():
    batch = batch_of(structures())
    model = small_model(conv="simple").train()
    assert type(model.convs[0]).__name__ == "SimpleConv"
    out = model(batch).prediction
    assert out.shape == (5, 1) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for conv in model.convs:
        assert conv.W_c.weight.grad.abs().sum() > 0
        assert conv.W_s.weight.grad.abs().sum() > 0
    result = predictor_of(model.eval()).predict(structures())
    assert np.all(np.isfinite(result.values))


def test_head_and_model_reject_bad_settings():
    table = atom_feature_table()
    with pytest.raises(ValueError, match="pooling"):
        Head(8, pooling="max")
    with pytest.raises(ValueError, match="conv"):
        CGCNN(table, conv="transformer")
    with pytest.raises(ValueError, match="unknown model settings"):
        build_model({"architecture": "cgcnn", "atom_fea_len": 8, "n_layers": 3}, table)
    with pytest.raises(ValueError, match="precision is an ALIGNN setting"):
        build_model({"architecture": "cgcnn", "precision": "bfloat16-mixed"}, table)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"architecture": "megnet"}, table)
    assert POOLINGS == ("mean", "sum", "site", "sum-vector")


def test_registry_defaults_are_the_reference_sizes():
    model = build_model({"architecture": "cgcnn"}, atom_feature_table())
    assert model.embedding.in_features == 93 and model.embedding.out_features == 64
    assert len(model.convs) == 3
    assert model.head.hidden[0].out_features == 128
    assert model.expansion.out_features == 41


def test_extra_features_are_required_and_used():
    table = atom_feature_table()
    torch.manual_seed(0)
    model = CGCNN(table, atom_fea_len=8, n_conv=1, h_fea_len=8, extra_features=2).eval()
    batch = batch_of(structures()[:2])
    with pytest.raises(ValueError, match="extra features"):
        model(batch)
    batch.features = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    with torch.no_grad():
        a = model(batch).prediction
        batch.features = torch.tensor([[5.0, 1.0], [2.0, 3.0]])
        b = model(batch).prediction
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_graph_settings_of_the_checkpoint_are_used():
    model = small_model()
    predictor = predictor_of(model, settings=GraphSettings(radius=3.0, max_neighbors=6))
    assert predictor.graph_settings == GraphSettings(radius=3.0, max_neighbors=6)
    # a 3.2 A simple cubic cell has its 6 nearest neighbours at 3.2 A: outside the checkpoint's 3.0 A
    # radius, so the Predictor rejects it, while the default 8 A radius accepts it
    from aiida_cgcnn.errors import InvalidStructureError
    from tests.builders import simple_cubic

    with pytest.raises(InvalidStructureError, match="no neighbour within 3"):
        predictor.predict([simple_cubic(a=3.2)])
    assert np.isfinite(predictor_of(model).predict([simple_cubic(a=3.2)]).values).all()
