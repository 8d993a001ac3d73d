"""Make ``alignn-small.pt`` and ``alignn-small.json``: a small ALIGNN trained in its own process on
JARVIS band gaps, and the predictions it made there for five structures (stored with them).

``tests/models/test_alignn.py`` loads the checkpoint on CPU and must reproduce these predictions:
a model trained elsewhere (another process, machine or version) predicts the same here.

    python -m tests.models.data.make_alignn_small   # from the repository root
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.public_data import shared_data_dir
from aiida_cgcnn.training.trainer import Trainer
from tests.models.helpers import SMALL_ALIGNN

HERE = Path(__file__).parent
CONFIG = SMALL_ALIGNN


def main() -> None:
    data, _ = CrystalDataset.from_cgcnn_directory(shared_data_dir() / "jarvis-sample", skip_invalid=True)
    data = data.subset(np.argsort(data.num_atoms, kind="stable")[:24])
    with tempfile.TemporaryDirectory() as out:
        result = Trainer(
            data,
            out,
            model_config=CONFIG,
            train_config={"epochs": 10, "batch_size": 8},
            device="cpu",
            progress=False,
        ).fit()
        shutil.copy(result.best_checkpoint, HERE / "alignn-small.pt")
    picked = data.subset([0, 5, 11, 17, 23])
    prediction = Predictor.from_checkpoint(HERE / "alignn-small.pt").predict(picked)
    structures = [
        {
            "id": str(c.id),
            "lattice": c.lattice.tolist(),
            "frac_coords": c.frac_coords.tolist(),
            "numbers": c.numbers.tolist(),
        }
        for c in picked.crystals()
    ]
    record = {
        "unit": data.units[0],
        "structures": structures,
        "predictions": prediction.values[:, 0].tolist(),
    }
    (HERE / "alignn-small.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
