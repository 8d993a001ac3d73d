"""GPU checks: run where CUDA is available (the lent GPU machine), skipped elsewhere."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_checkpoint_trained_on_gpu_predicts_on_cpu(tmp_path):
    structures, energies = emt_alloys(80, seed=3)
    dataset, _ = CrystalDataset.from_structures(structures, energies, target_names=["e"], units=["eV/atom"])
    result = Trainer(
        dataset,
        tmp_path,
        model_config={"pooling": "site"},
        train_config={"epochs": 3, "batch_size": 16},
        device="cuda",
        progress=False,
    ).fit()
    state = load_checkpoint(result.best_checkpoint)
    assert all(t.device.type == "cpu" for t in state["state_dict"].values())
    on_gpu = Predictor.from_checkpoint(result.best_checkpoint, device="cuda").predict(structures[:20])
    on_cpu = Predictor.from_checkpoint(result.best_checkpoint, device="cpu").predict(structures[:20])
    np.testing.assert_allclose(on_cpu.values, on_gpu.values, rtol=1e-4, atol=1e-5)
    # and in a process that cannot see the GPU at all
    code = (
        "import sys; from aiida_cgcnn.predict import Predictor; from aiida_cgcnn.demo import emt_alloys;"
        "s, _ = emt_alloys(80, seed=3); p = Predictor.from_checkpoint(sys.argv[1]).predict(s[:20]);"
        "print(' '.join(repr(v) for v in p.values[:, 0]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, str(result.best_checkpoint)],
        check=True,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
    ).stdout
    values = np.array([float(v) for v in output.split()])
    np.testing.assert_allclose(values, on_gpu.values[:, 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16-mixed"])
def test_alignn_on_gpu_is_alignn_on_cpu(jarvis_dataset, norm, precision):
    # on a GPU the fused functions take one block; the same maths, values and gradients
    import copy

    from tests.models.helpers import SMALL_ALIGNN, batch_of, real_crystals_of, small_model

    crystals = real_crystals_of(jarvis_dataset)
    batch = batch_of(crystals)
    batch.targets = torch.linspace(0, 1, len(crystals))[:, None]
    on_cpu = small_model(3, base=SMALL_ALIGNN, norm=norm, precision=precision).train()
    on_gpu = copy.deepcopy(on_cpu).cuda()
    outputs = []
    for model, b in ((on_cpu, batch), (on_gpu, batch.to("cuda"))):
        output = model(b).prediction
        ((output - b.targets) ** 2).mean().backward()
        outputs.append(output.detach().cpu())
    tolerance = 1e-4 if precision == "float32" else 2e-2
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=tolerance * outputs[0].abs().max())
    gradients = [torch.cat([p.grad.flatten().cpu() for p in m.parameters()]) for m in (on_cpu, on_gpu)]
    assert torch.nn.functional.cosine_similarity(*gradients, dim=0) > 0.999
