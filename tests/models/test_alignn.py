"""ALIGNN: the fused autograd functions against the equations, invariances, training through the
trainer, checkpoints, prediction on CPU from a checkpoint made elsewhere, the command line."""

from __future__ import annotations

import copy
import csv
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import aiida_cgcnn.models.alignn_ops as ops
from aiida_cgcnn.graph.batch import edge_capped_batches
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.models.alignn import ALIGNN, Dense, EdgeGatedConv
from aiida_cgcnn.models.alignn_ops import Workspace
from aiida_cgcnn.models.registry import build_model, model_defaults
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import crystal, moved, permuted, supercell
from tests.cli.helpers import cli
from tests.models.helpers import SMALL_ALIGNN, batch_of, predict, real_crystals_of, small_model

DATA = Path(__file__).parent / "data"


def small_alignn(seed: int = 0, warm_batch=None, **config) -> ALIGNN:
    """A small ALIGNN with random weights, target scaling and (optionally) batch-norm statistics
    from ``warm_batch``; in eval mode."""
    return small_model(seed, warm_batch, base=SMALL_ALIGNN, **config)


@pytest.fixture(scope="module")
def real_crystals(jarvis_dataset):
    return real_crystals_of(jarvis_dataset)


# --- the fused functions are the equations -----------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    # several row blocks even for tiny graphs, so block boundaries are exercised
    monkeypatch.setattr(ops, "BLOCK_ROWS", 7)


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.normal_()
    return module


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("update_edges", [True, False])
def test_fused_edge_gated_conv_is_the_reference(small_blocks, training, update_edges, norm):
    torch.manual_seed(0)
    nodes, edges, width = 6, 23, 3
    src, dst = torch.randint(0, nodes, (edges,)), torch.randint(0, nodes, (edges,))
    conv = randomised(EdgeGatedConv(width, norm, update_edges=update_edges)).train(training)
    h = torch.randn(nodes, width, dtype=torch.double, requires_grad=True)
    e = torch.randn(edges, width, dtype=torch.double, requires_grad=True)

    def fused(h, e, *_):
        return tuple(x for x in conv(h, e, src, dst, Workspace()) if x is not None)

    def reference(h, e, *_):
        return tuple(x for x in conv.reference(h, e, src, dst) if x is not None)

    inputs = (h, e, *conv.parameters())
    for a, b in zip(fused(*inputs), reference(*inputs), strict=True):
        torch.testing.assert_close(a, b)
    grads = [torch.randn_like(x) for x in reference(*inputs)]
    for a, b in zip(
        torch.autograd.grad(fused(*inputs), inputs, grads),
        torch.autograd.grad(reference(*inputs), inputs, grads),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fused, inputs)


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_dense_is_the_reference(small_blocks, training, norm):
    torch.manual_seed(1)
    dense = randomised(Dense(5, 4, norm)).train(training)
    x = torch.randn(30, 5, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(dense(x, Workspace()), dense.reference(x))
    assert torch.autograd.gradcheck(lambda x, *_: dense(x, Workspace()), (x, *dense.parameters()))


def test_batch_norm_without_running_statistics_normalises_by_the_batch_in_eval_mode(small_blocks):
    # nn.BatchNorm1d(track_running_stats=False) uses the batch's statistics in eval mode too; the fused
    # path read its (absent) running statistics instead
    torch.manual_seed(3)
    dense = Dense(5, 4).double()
    dense.norm = torch.nn.BatchNorm1d(4, track_running_stats=False).double()
    conv = EdgeGatedConv(3, "batch").double()
    conv.norm_edges = torch.nn.BatchNorm1d(3, track_running_stats=False).double()
    dense, conv = randomised(dense).eval(), randomised(conv).eval()
    x = torch.randn(30, 5, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(dense(x, Workspace()), dense.reference(x))
    assert torch.autograd.gradcheck(lambda x, *_: dense(x, Workspace()), (x, *dense.parameters()))
    src, dst = torch.randint(0, 6, (23,)), torch.randint(0, 6, (23,))
    h = torch.randn(6, 3, dtype=torch.double, requires_grad=True)
    e = torch.randn(23, 3, dtype=torch.double, requires_grad=True)
    for a, b in zip(conv(h, e, src, dst, Workspace()), conv.reference(h, e, src, dst), strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda h, e, *_: tuple(conv(h, e, src, dst, Workspace())), (h, e, *conv.parameters())
    )


def test_batch_norm_running_statistics_are_updated_as_torch_does(small_blocks):
    torch.manual_seed(2)
    dense = Dense(4, 6).double().train()
    twin = copy.deepcopy(dense)
    for _ in range(3):
        x = torch.randn(40, 4, dtype=torch.double) * 3 + 1
        dense(x, Workspace())
        twin.reference(x)
    for name, buffer in dense.norm.named_buffers():
        torch.testing.assert_close(buffer, dict(twin.norm.named_buffers())[name])


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_whole_model_fused_and_reference_paths_agree(real_crystals, norm):
    batch = batch_of(real_crystals)
    batch.targets = torch.linspace(0, 1, len(real_crystals))[:, None]
    fused = small_alignn(seed=3, norm=norm).train()
    reference = copy.deepcopy(fused)
    reference.workspace = None
    for model in (fused, reference):
        loss = ((model(batch).prediction - batch.targets) ** 2).mean()
        loss.backward()
    torch.testing.assert_close(fused(batch).prediction, reference(batch).prediction, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(fused.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=2e-3, atol=1e-5, msg=name)
    fused.eval(), reference.eval()
    torch.testing.assert_close(predict(fused, real_crystals), predict(reference, real_crystals))


@pytest.mark.parametrize("update_edges", [True, False])
def test_fused_edge_gated_conv_in_mixed_precision_is_the_reference(small_blocks, update_edges):
    # bfloat16 factors: the fused path rounds the same factors as the reference; they differ only by
    # where the blocks' products are summed (well inside bfloat16's 2^-8)
    torch.manual_seed(0)
    nodes, edges, width = 9, 60, 8
    src, dst = torch.randint(0, nodes, (edges,)), torch.randint(0, nodes, (edges,))
    conv = randomised(EdgeGatedConv(width, update_edges=update_edges)).float().train()
    conv.matmul_dtype = torch.bfloat16
    h = torch.randn(nodes, width, requires_grad=True)
    e = torch.randn(edges, width, requires_grad=True)
    inputs = (h, e, *conv.parameters())
    fused = [x for x in conv(h, e, src, dst, Workspace()) if x is not None]
    reference = [x for x in conv.reference(h, e, src, dst) if x is not None]
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
    grads = [torch.randn_like(x) for x in reference]
    for a, b in zip(
        torch.autograd.grad(fused, inputs, grads), torch.autograd.grad(reference, inputs, grads), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)
    conv.matmul_dtype = None  # and the rounding is real: float32 products differ
    assert not torch.allclose(conv.reference(h, e, src, dst)[0], reference[0], rtol=1e-6, atol=1e-6)


def test_mixed_precision_model_is_close_to_float32(real_crystals):
    batch = batch_of(real_crystals)
    batch.targets = torch.linspace(0, 1, len(real_crystals))[:, None]
    exact = small_alignn(seed=3).train()
    mixed = small_alignn(seed=3, precision="bfloat16-mixed").train()
    twin = copy.deepcopy(mixed)
    twin.workspace = None
    outputs = []
    for model in (exact, mixed, twin):
        output = model(batch).prediction
        ((output - batch.targets) ** 2).mean().backward()
        outputs.append(output.detach())
    scale = outputs[0].abs().max()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=3e-2 * scale)
    torch.testing.assert_close(outputs[1], outputs[2], rtol=0, atol=1e-2 * scale)
    assert not torch.equal(outputs[1], outputs[0])

    def gradient(model):
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    for other in (mixed, twin):  # same descent direction, to a fraction of a percent
        cosine = torch.nn.functional.cosine_similarity(gradient(exact), gradient(other), dim=0)
        assert cosine > 0.995, cosine
    with pytest.raises(ValueError, match="precision must be one of"):
        small_alignn(precision="float16")


def test_a_second_forward_pass_before_the_backward_pass_raises(real_crystals):
    # the reused arrays are guarded by autograd's checks: never a silently wrong gradient
    model = small_alignn().train()
    first = model(batch_of(real_crystals[:3])).prediction.sum()
    model(batch_of(real_crystals[3:])).prediction.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()
    # without the workspace, as many graphs as wanted
    model.workspace = None
    first = model(batch_of(real_crystals[:3])).prediction.sum()
    model(batch_of(real_crystals[3:])).prediction.sum().backward()
    first.backward()


def test_workspace_is_never_saved_or_copied(real_crystals):
    model = small_alignn()
    model.train()
    model(batch_of(real_crystals)).prediction.sum().backward()
    assert model.workspace._arrays
    assert not any("workspace" in key for key in model.state_dict())
    assert not copy.deepcopy(model).workspace._arrays
    assert not pickle.loads(pickle.dumps(model)).workspace._arrays


# --- physics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_permutation_rotation_translation_invariance(real_crystals, pooling):
    rng = np.random.default_rng(0)
    model = small_alignn(warm_batch=batch_of(real_crystals), pooling=pooling)
    reference = predict(model, real_crystals)
    torch.testing.assert_close(predict(model, [permuted(c, rng) for c in real_crystals]), reference)
    torch.testing.assert_close(predict(model, [moved(c, rng) for c in real_crystals]), reference)
    torch.testing.assert_close(predict(model, real_crystals[::-1]).flip(0), reference)
    # and the model does tell the structures apart
    assert len(set(np.round(reference[:, 0].numpy(), 4).tolist())) == len(real_crystals)


@pytest.mark.parametrize("reps", [(2, 1, 1), (1, 2, 2)])
def test_mean_pooling_is_supercell_invariant_and_sum_pooling_extensive(real_crystals, reps):
    # tie-aware neighbours: each atom of a supercell has its image's bonds, hence its image's bond pairs
    crystals = real_crystals[:4]
    bigger = [supercell(c, reps) for c in crystals]
    mean_model = small_alignn(warm_batch=batch_of(crystals), pooling="mean")
    torch.testing.assert_close(
        predict(mean_model, bigger), predict(mean_model, crystals), rtol=1e-4, atol=1e-5
    )
    sum_model = small_alignn(warm_batch=batch_of(crystals), pooling="sum")
    torch.testing.assert_close(
        predict(sum_model, bigger), predict(sum_model, crystals) * int(np.prod(reps)), rtol=1e-4, atol=1e-4
    )


def test_paper_defaults():
    defaults = model_defaults("alignn")
    assert (defaults["alignn_layers"], defaults["gcn_layers"]) == (4, 4)
    assert (defaults["hidden_features"], defaults["embedding_features"]) == (256, 64)
    assert (defaults["edge_bins"], defaults["cutoff"], defaults["angle_bins"]) == (80, 8.0, 40)
    model = build_model({"architecture": "alignn"}, atom_feature_table())
    assert model.atom_embedding.linear.in_features == 93  # CGCNN's Table II
    assert model.bond_embedding.expansion.centers[[0, -1]].tolist() == [0.0, 8.0]
    assert model.angle_embedding.expansion.centers[[0, -1]].tolist() == [-1.0, 1.0]
    assert len(model.alignn_layers) == 4 and len(model.gcn_layers) == 4


# --- training, checkpoints, prediction ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_jarvis(jarvis_dataset) -> CrystalDataset:
    """The 24 smallest JARVIS structures with their band gaps."""
    return jarvis_dataset.subset(np.argsort(jarvis_dataset.num_atoms, kind="stable")[:24])


@pytest.fixture(scope="module")
def trained(small_jarvis, tmp_path_factory):
    out = tmp_path_factory.mktemp("alignn")
    trainer = Trainer(
        small_jarvis,
        out,
        model_config=SMALL_ALIGNN,
        train_config={
            "epochs": 60,
            "batch_size": 8,
            "lr": 5e-3,
            "scheduler": "onecycle",
            "loss": "l1",
            # no validation set, so the kept model is the last epoch's: overfitting is what is tested
            "train_ratio": 0.875,
            "val_ratio": 0.0,
            "test_ratio": 0.125,
        },
        device="cpu",
        progress=False,
    )
    return trainer, trainer.fit()


def test_overfits_a_small_real_dataset(trained, small_jarvis):
    _, result = trained
    train = result.metrics["train"]
    mad = np.abs(small_jarvis.targets - small_jarvis.targets.mean()).mean()
    assert train["mae"] < 0.25 * mad, (train, mad)
    history = json.loads(json.dumps(load_checkpoint(result.last_checkpoint)["history"]))
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]


def test_checkpoint_round_trip_and_cpu_prediction(trained, small_jarvis, tmp_path):
    _, result = trained
    state = load_checkpoint(result.best_checkpoint)  # weights_only: nothing executes on load
    assert state["model_config"]["architecture"] == "alignn"
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert isinstance(predictor.model, ALIGNN)
    with open(result.output_dir / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    test = small_jarvis.subset(state["split"]["test"].numpy())
    prediction = predictor.predict(test, batch_size=3, max_edges_per_batch=600)
    assert prediction.ids == [r["id"] for r in rows]
    np.testing.assert_allclose(
        prediction.values[:, 0],
        [float(r[f"{test.target_names[0]}_pred"]) for r in rows],
        rtol=1e-5,
        atol=1e-6,
    )
    # a model rebuilt from the saved config and weights predicts the same
    again = build_model(state["model_config"], state["state_dict"]["atom_table"])
    again.load_state_dict(state["state_dict"])
    torch.testing.assert_close(
        predict(again.eval(), list(test.crystals())),
        torch.from_numpy(prediction.values).float(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_prediction_from_a_checkpoint_trained_elsewhere():
    # a small ALIGNN trained in another process (tests/models/data/make_alignn_small.py), with the
    # predictions it made there: loading it here, on CPU, gives the same numbers
    path = DATA / "alignn-small.pt"
    expected = json.loads((DATA / "alignn-small.json").read_text())
    predictor = Predictor.from_checkpoint(path, device="cpu")
    structures = [
        crystal(s["id"], s["lattice"], s["frac_coords"], s["numbers"]) for s in expected["structures"]
    ]
    prediction = predictor.predict(structures)
    np.testing.assert_allclose(prediction.values[:, 0], expected["predictions"], rtol=1e-5, atol=1e-5)
    assert predictor.model.workspace is not None and predictor.units == [expected["unit"]]


def train_small(dataset, output_dir):
    """Two epochs of the small ALIGNN on CPU."""
    return Trainer(
        dataset,
        output_dir,
        model_config=SMALL_ALIGNN,
        train_config={"epochs": 2, "batch_size": 8},
        device="cpu",
        progress=False,
    ).fit()


def test_classification_and_descriptor_hybrid(small_jarvis, tmp_path):
    # band gap above 0.5 eV as a class, and three extra per-structure features through the shared head
    data = small_jarvis.subset(np.arange(len(small_jarvis)))
    data.targets = (data.targets > 0.5).astype(np.float64)
    data.task, data.classes = "classification", ["metal", "gap"]
    result = train_small(data, tmp_path / "cls")
    probabilities = Predictor.from_checkpoint(result.best_checkpoint).predict(data).values
    assert probabilities.shape == (len(data), 2)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    hybrid = small_jarvis.subset(np.arange(len(small_jarvis)))
    hybrid.features = np.stack([hybrid.num_atoms, hybrid.num_atoms**0.5, np.arange(len(hybrid))], 1).astype(
        float
    )
    hybrid.feature_names = ["n", "sqrt_n", "k"]
    result = train_small(hybrid, tmp_path / "hybrid")
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    assert predictor.model.head.extra_features == 3
    with pytest.raises(ValueError, match="features"):
        predictor.predict(list(hybrid.crystals()))
    assert predictor.predict(hybrid).values.shape == (len(hybrid), 1)


# --- batches capped by edges -------------------------------------------------------------------


def test_edge_capped_batches():
    rng = np.random.default_rng(0)
    num_edges = rng.integers(10, 300, size=200)
    num_edges[17] = 5000  # larger than the cap: a batch of its own
    order = rng.permutation(200)
    batches = edge_capped_batches(order, num_edges, batch_size=16, max_edges=1200)
    np.testing.assert_array_equal(np.concatenate(batches), order)  # every crystal once, in order
    for part in batches:
        assert len(part) <= 16
        assert num_edges[part].sum() <= 1200 or len(part) == 1
    # greedy: the next crystal would not have fitted
    for part, after in itertools.pairwise(batches):
        assert len(part) == 16 or num_edges[part].sum() + num_edges[after[0]] > 1200
    plain = edge_capped_batches(order, num_edges, batch_size=16)
    assert [len(p) for p in plain] == [16] * 12 + [8]


def test_trainer_caps_edges_and_schedules_every_step(small_jarvis, tmp_path):
    trainer = Trainer(
        small_jarvis,
        tmp_path,
        model_config=SMALL_ALIGNN,
        device="cpu",
        progress=False,
        train_config={
            "epochs": 3,
            "batch_size": 64,
            "max_edges_per_batch": 700,
            "scheduler": "onecycle",
            "lr": 1e-3,
        },
    )
    edges = trainer.prepared.graphs.num_edges
    seen = []
    batch = trainer.prepared.graphs.batch
    trainer.prepared.graphs.batch = lambda indices, *a, **k: (
        seen.append(np.asarray(indices)) or batch(indices, *a, **k)
    )
    result = trainer.fit()
    train_batches = [b for b in seen if edges[b].sum() <= 700 or len(b) == 1]
    assert len(train_batches) == len(seen) and len(seen) > 3
    # the one-cycle schedule was told the exact number of steps the capped batches make
    state = load_checkpoint(result.last_checkpoint)
    train = state["split"]["train"].numpy()
    steps = sum(len(trainer._train_batches(trainer._epoch_order(train, e))) for e in range(3))
    assert state["scheduler_state"]["total_steps"] == state["scheduler_state"]["last_epoch"] == steps


# --- the command line --------------------------------------------------------------------------


def test_command_line_preset_and_de_alignn(small_jarvis, tmp_path):
    data = tmp_path / "small.npz"
    small_jarvis.subset(np.arange(12)).save(data)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {k: v for k, v in SMALL_ALIGNN.items() if k != "architecture"}}))
    run = cli(
        "train",
        data,
        "-o",
        tmp_path / "run",
        "--model",
        "de-alignn",
        "--preset",
        "alignn-paper",
        "--config",
        config,
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--max-edges",
        "2000",
        "--precision",
        "bfloat16-mixed",
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    train = state["train_config"]
    assert (train["optimizer"], train["lr"], train["weight_decay"]) == ("adamw", 1e-3, 1e-5)
    assert (train["scheduler"], train["loss"], train["epochs"], train["batch_size"]) == (
        "onecycle",
        "l1",
        2,
        4,
    )
    assert train["max_edges_per_batch"] == 2000
    assert state["model_config"]["architecture"] == "alignn"
    assert state["model_config"]["hidden_features"] == 16
    assert state["model_config"]["extra_features"] == len(state["feature_names"]) > 20  # the descriptors
    assert state["model_config"]["precision"] == "bfloat16-mixed"  # and the predictor keeps it
    model = Predictor.from_checkpoint(tmp_path / "run" / "best.pt").model
    assert model.precision == "bfloat16-mixed"
    assert {m.matmul_dtype for m in model.modules() if hasattr(m, "matmul_dtype")} == {torch.bfloat16}
