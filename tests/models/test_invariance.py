"""Physical invariances of CGCNN predictions: atom order, rotation, translation, choice of cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.builders import crystal, moved, permuted, rocksalt_conventional, rocksalt_primitive, supercell
from tests.models.helpers import batch_of, predict, real_crystals_of, small_model


@pytest.fixture(scope="module")
def real_crystals(jarvis_dataset):
    return real_crystals_of(jarvis_dataset)


@pytest.mark.parametrize("pooling", ["mean", "sum", "site", "sum-vector"])
def test_permutation_invariance(real_crystals, pooling):
    rng = np.random.default_rng(0)
    model = small_model(warm_batch=batch_of(real_crystals), pooling=pooling)
    reference = predict(model, real_crystals)
    shuffled = predict(model, [permuted(c, rng) for c in real_crystals])
    torch.testing.assert_close(shuffled, reference, rtol=1e-5, atol=1e-5)
    # and the crystals' order in a batch does not matter either
    reverse = predict(model, real_crystals[::-1])
    torch.testing.assert_close(reverse.flip(0), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rotation_and_translation_invariance(real_crystals, seed):
    rng = np.random.default_rng(seed)
    model = small_model(warm_batch=batch_of(real_crystals))
    reference = predict(model, real_crystals)
    transformed = predict(model, [moved(c, rng) for c in real_crystals])
    torch.testing.assert_close(transformed, reference, rtol=1e-5, atol=1e-5)


def test_invariances_are_not_trivial(real_crystals):
    # the model does tell different structures apart, so the equalities above mean something
    model = small_model(warm_batch=batch_of(real_crystals))
    prediction = predict(model, real_crystals)[:, 0]
    assert len(set(np.round(prediction.numpy(), 4).tolist())) == len(real_crystals)
    a = rocksalt_primitive(a=5.64)
    strained = crystal("strained", a.lattice @ np.diag([1.05, 1, 1]), a.frac_coords, a.numbers)
    assert not torch.allclose(predict(model, [a]), predict(model, [strained]), rtol=1e-4)


@pytest.mark.parametrize("reps", [(2, 1, 1), (2, 2, 2), (1, 3, 1)])
def test_mean_pooling_supercell_invariance(real_crystals, reps):
    # the neighbour search is periodic and keeps tied shells whole, so every atom of a supercell has
    # exactly the neighbours of its image in the cell: atom vectors, and their mean, are the same
    model = small_model(warm_batch=batch_of(real_crystals), pooling="mean")
    reference = predict(model, real_crystals)
    bigger = predict(model, [supercell(c, reps) for c in real_crystals])
    torch.testing.assert_close(bigger, reference, rtol=1e-5, atol=1e-5)


def test_mean_pooling_supercell_invariance_in_training_mode(real_crystals):
    # batch norm over real edges and atoms only (no padding): a supercell repeats every edge and atom
    # the same number of times, so even the batch statistics of training mode are unchanged
    model = small_model(pooling="mean").train()
    for c in real_crystals[:3]:
        with torch.no_grad():
            cell = model(batch_of([c])).prediction
            big = model(batch_of([supercell(c, (2, 2, 1))])).prediction
        torch.testing.assert_close(big, cell, rtol=1e-4, atol=1e-5)


def test_primitive_and_conventional_rocksalt_agree():
    model = small_model(pooling="mean")
    torch.testing.assert_close(
        predict(model, [rocksalt_conventional()]),
        predict(model, [rocksalt_primitive()]),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("reps", [(2, 1, 1), (2, 2, 2), (3, 1, 2)])
def test_sum_pooling_is_exactly_extensive(real_crystals, reps):
    n = int(np.prod(reps))
    model = small_model(warm_batch=batch_of(real_crystals), pooling="sum")
    reference = predict(model, real_crystals)
    bigger = predict(model, [supercell(c, reps) for c in real_crystals])
    torch.testing.assert_close(bigger, n * reference, rtol=1e-5, atol=1e-5)


def test_site_pooling_is_intensive(real_crystals):
    model = small_model(warm_batch=batch_of(real_crystals), pooling="site")
    reference = predict(model, real_crystals)
    bigger = predict(model, [supercell(c, (2, 1, 2)) for c in real_crystals])
    torch.testing.assert_close(bigger, reference, rtol=1e-5, atol=1e-5)


def test_sum_vector_pooling_sums_atom_vectors(real_crystals):
    # sum-vector pools by summing atom vectors before the output network: the pooled vector of a
    # 2x1x1 supercell is softplus(2 s) where the cell's is softplus(s)
    model = small_model(warm_batch=batch_of(real_crystals), pooling="sum-vector")
    with torch.no_grad():
        cell = model(batch_of(real_crystals))
        big = model(batch_of([supercell(c, (2, 1, 1)) for c in real_crystals]))
    assert cell.prediction.shape == (len(real_crystals), 1)
    assert torch.isfinite(cell.prediction).all()

    def inverse_softplus(y):
        return y + torch.log(-torch.expm1(-y))

    s_cell = inverse_softplus(cell.crystal_vector.double())
    s_big = inverse_softplus(big.crystal_vector.double())
    torch.testing.assert_close(s_big, 2 * s_cell, rtol=1e-4, atol=1e-4)
