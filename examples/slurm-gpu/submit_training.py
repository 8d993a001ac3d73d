"""Train on a SLURM GPU cluster with the restart work chain: ``verdi run submit_training.py DATASET_PK``.

Asks SLURM for one GPU; the command picks it up with ``--device auto``. With ``nproc_per_node`` > 1
in the parameters, training runs distributed data-parallel on that many GPUs of the node.
"""

import sys

from aiida import orm
from aiida.engine import submit

from aiida_cgcnn.workflows.train import TrainWorkChain

dataset = orm.load_node(int(sys.argv[1]))
builder = TrainWorkChain.get_builder()
builder.train.code = orm.load_code("aiida-cgcnn@gpu-cluster")
builder.train.dataset = dataset
builder.train.parameters = orm.Dict({
    "model": {"architecture": "cgcnn", "pooling": "mean"},
    "train": {"epochs": 300, "batch_size": 256, "lr": 2e-3, "patience": 50},
})
options = builder.train.metadata.options
options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 8}
options.max_wallclock_seconds = 4 * 3600  # the command stops cleanly before it; the work chain resumes
options.custom_scheduler_commands = "#SBATCH --gres=gpu:1\n#SBATCH --partition=gpu"
options.environment_variables = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
node = submit(builder)
print(f"submitted TrainWorkChain<{node.pk}>")
