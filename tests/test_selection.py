"""Screening criteria and batch selection (aiida_cgcnn.selection)."""

import numpy as np
import pytest

from aiida_cgcnn.selection import Criterion, composition_features, mae_over_mad, select_batch


def test_criterion_ranks_bounds_spread_and_top_k():
    values = np.array([3.0, np.nan, 5.0, 1.0, 5.0, 4.0])
    std = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])
    assert Criterion("Cv").select(values).tolist() == [2, 4, 5, 0, 3]  # NaN never kept; ties by order
    assert Criterion("Cv", direction="min", top_k=2).select(values).tolist() == [3, 0]
    assert Criterion("Cv", minimum=3.0, maximum=4.5).select(values).tolist() == [5, 0]
    assert Criterion("Cv", max_std=0.5).select(values, std).tolist() == [2, 5, 0, 3]


def test_per_atom_criterion_divides_by_the_atoms():
    values, atoms = np.array([10.0, 6.0]), np.array([5, 2])
    assert Criterion("Cv").select(values).tolist() == [0, 1]
    assert Criterion("Cv", per_atom=True).select(values, atoms=atoms).tolist() == [1, 0]
    with pytest.raises(ValueError, match="number of atoms"):
        Criterion("Cv", per_atom=True).select(values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"target": "Cv", "direction": "up"}, "direction"),
        ({"target": "Cv", "top_k": 0}, "top_k"),
        ({"target": "Cv", "minimum": 2, "maximum": 1}, "empty"),
        ({"target": "Cv", "topk": 3}, "unknown criterion key"),
        ({"direction": "max"}, "needs a target"),
    ],
)
def test_bad_criteria_are_refused_with_a_reason(values, message):
    with pytest.raises(ValueError, match=message):
        Criterion.from_dict(values)


def test_uncertainty_takes_the_largest_spread_and_skips_excluded():
    std = np.array([0.1, 0.9, 0.5, np.nan, 0.7])
    assert select_batch("uncertainty", 2, std).tolist() == [1, 4]
    assert select_batch("uncertainty", 2, std, exclude=[1]).tolist() == [4, 2]
    assert select_batch("uncertainty", 10, std, exclude=[1]).tolist() == [4, 2, 0]


def test_random_is_reproducible_and_uniform():
    std = np.ones(1000)
    one = select_batch("random", 50, std, seed=7)
    assert one.tolist() == select_batch("random", 50, std, seed=7).tolist()
    assert one.tolist() != select_batch("random", 50, std, seed=8).tolist()
    assert len(set(one.tolist())) == 50
    picks = np.concatenate([select_batch("random", 100, std, seed=s) for s in range(50)])
    assert np.histogram(picks, bins=10, range=(0, 1000))[0].min() > 350  # 500 expected per bin


def test_diverse_spreads_a_batch_over_clusters_that_uncertainty_spends_on_one():
    rng = np.random.default_rng(0)
    # three clusters; the most uncertain structures all sit in cluster 0
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cluster = np.repeat([0, 1, 2], 30)
    features = centres[cluster] + rng.normal(scale=0.3, size=(90, 2))
    std = np.where(cluster == 0, 1.0, 0.6) + rng.uniform(0, 0.05, size=90)
    assert set(cluster[select_batch("uncertainty", 3, std)].tolist()) == {0}
    diverse = select_batch("diverse", 3, std, features=features)
    assert sorted(cluster[diverse].tolist()) == [0, 1, 2]
    assert diverse[0] == int(np.argmax(std))
    with pytest.raises(ValueError, match="needs features"):
        select_batch("diverse", 3, std)


def test_composition_features_and_mae_over_mad():
    rows = composition_features([np.array([8, 8, 12]), np.array([26])], np.array([30.0, 12.0]))
    assert rows[0, 7] == pytest.approx(2 / 3) and rows[0, 11] == pytest.approx(1 / 3)
    assert rows[0, 103] == pytest.approx(10.0) and rows[1, 103] == pytest.approx(12.0)
    assert rows[1, 104] == pytest.approx(0.0)
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    assert mae_over_mad(np.full(4, 2.5), reference) == pytest.approx(1.0)
    assert mae_over_mad(reference + 0.1, reference) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="strategy"):
        select_batch("greedy", 1, np.ones(3))
