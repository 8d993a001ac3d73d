"""Run by torchrun from test_distributed.py: train with the Trainer, then save this rank's weights and
the dataset indices it trained on in every epoch.

Usage: torchrun --standalone --nproc_per_node=2 ddp_worker.py DATASET.npz OUTPUT_DIR EPOCHS MODEL_JSON
"""

import json
import sys
from pathlib import Path

import torch

from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

torch.set_num_threads(1)
dataset_path, output, epochs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
trainer = Trainer(
    CrystalDataset.load(dataset_path),
    output / "run",
    json.loads(sys.argv[4]),
    {"epochs": epochs, "batch_size": 4, "seed": 7},
    workers=1,
    device="cpu",
    cache_dir=output / "cache",
)
models = []
build = trainer._build_model
trainer._build_model = lambda idx: models.append(build(idx)) or models[-1]
# record the batches each epoch trains on (no edge cap: one call per epoch); the real method runs
trained: list[list[int]] = []
train_batches = trainer._train_batches


def recorded_batches(order):
    batches = train_batches(order)
    trained.append([int(i) for batch in batches for i in batch])
    return batches


trainer._train_batches = recorded_batches
trainer.fit()
parameters = {name: p.detach().clone() for name, p in models[0].named_parameters()}
torch.save(
    {"rank": trainer.rank, "world": trainer.world, "parameters": parameters, "trained": trained},
    output / f"rank{trainer.rank}.pt",
)
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
