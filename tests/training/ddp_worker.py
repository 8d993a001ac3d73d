"""Run by torchrun from test_distributed.py: train with the Trainer, then save this rank's weights.

Usage: torchrun --standalone --nproc_per_node=2 ddp_worker.py DATASET.npz OUTPUT_DIR
"""

import sys
from pathlib import Path

import torch

from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

torch.set_num_threads(1)
dataset_path, output = Path(sys.argv[1]), Path(sys.argv[2])
trainer = Trainer(
    CrystalDataset.load(dataset_path),
    output / "run",
    {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 32},
    {"epochs": 2, "batch_size": 4, "seed": 7},
    workers=1,
    device="cpu",
    cache_dir=output / "cache",
)
models = []
build = trainer._build_model
trainer._build_model = lambda idx: models.append(build(idx)) or models[-1]
trainer.fit()
parameters = {name: p.detach().clone() for name, p in models[0].named_parameters()}
torch.save(
    {"rank": trainer.rank, "world": trainer.world, "parameters": parameters},
    output / f"rank{trainer.rank}.pt",
)
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
