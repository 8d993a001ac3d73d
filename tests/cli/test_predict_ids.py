"""predict: files of the same name get their paths as ids; --sites with a mean-pooled model says why none."""

import subprocess
import sys
from pathlib import Path

from ase.build import bulk

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.predict import read_predictions_csv
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

EXECUTABLE = str(Path(sys.executable).parent / "aiida-cgcnn")


def test_same_file_names_and_sites_of_a_mean_model(tmp_path):
    structures, energies = emt_alloys(16, seed=4)
    dataset, _ = CrystalDataset.from_structures(structures, energies)
    checkpoint = (
        Trainer(
            dataset,
            tmp_path / "run",
            model_config={"atom_fea_len": 8, "n_conv": 1},
            train_config={"epochs": 1},
            progress=False,
        )
        .fit()
        .best_checkpoint
    )
    for folder, element in (("a", "Cu"), ("b", "Ni")):
        (tmp_path / folder).mkdir()
        bulk(element, cubic=True).write(tmp_path / folder / "POSCAR", format="vasp")
    out = tmp_path / "p.csv"
    result = subprocess.run(
        [
            EXECUTABLE,
            "predict",
            str(checkpoint),
            str(tmp_path / "a/POSCAR"),
            str(tmp_path / "b/POSCAR"),
            "-o",
            str(out),
            "--sites",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    ids = [row["id"] for row in read_predictions_csv(out)[1]]
    assert ids == [str(tmp_path / "a/POSCAR"), str(tmp_path / "b/POSCAR")]
    assert "only 'site' and 'sum' pooling" in result.stderr
    assert not (tmp_path / "s.csv").exists()
