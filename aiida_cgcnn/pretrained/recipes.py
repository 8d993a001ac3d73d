"""How each shipped model is made: its data, split, model and training settings.

A recipe is the whole of what :func:`~aiida_cgcnn.pretrained.build.build` needs to rebuild a model
from the project's real-data folder (``../shared/data`` or ``$AIIDA_CGCNN_DATA``); nothing is
downloaded. The registry entry written by the build repeats the recipe, so a model card says how its
model was made.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.dataset import CrystalDataset, Skipped

__all__ = ["RECIPES", "Recipe", "recipe"]


@dataclass(frozen=True)
class Recipe:
    """A pretrained model's recipe.

    Attributes
    ----------
    name, version
        The model's name (``aiida-cgcnn predict --model NAME``) and version (bumped on any change).
    source
        The data file under the real-data folder, and what it is (``description``, ``functional``,
        ``licence``, ``citation``, ``reader`` settings).
    extensive
        Target name -> basis cell (``"primitive cell"``) for targets that scale with the cell.
    split
        ``test`` and ``calibration`` fractions, fixed by ``seed`` for every member; the members
        draw their training and validation parts from the rest (``val`` of it, by member seed).
    """

    name: str
    version: int
    title: str
    source: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    members: int = 5
    split: dict[str, Any] = field(
        default_factory=lambda: {"test": 0.2, "calibration": 0.1, "val": 0.1, "seed": 0}
    )
    extensive: dict[str, str] = field(default_factory=dict)
    limits: str = ""

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "name": self.name,
                "version": self.version,
                "title": self.title,
                "source": self.source,
                "model": self.model,
                "train": self.train,
                "members": self.members,
                "split": self.split,
                "extensive": self.extensive,
                "limits": self.limits,
            }
        )

    def read(self, data_dir: Path) -> tuple[CrystalDataset, list[Skipped], Path]:
        """The recipe's dataset from ``data_dir``, the structures left out, and the source file."""
        from ..training import public_data

        path = data_dir / self.source["path"]
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: building {self.name!r} needs the project's real data "
                "(../shared/data or $AIIDA_CGCNN_DATA)"
            )
        reader = self.source["reader"]
        if reader == "phonondb":
            dataset, skipped = public_data.read_phonondb_thermal(
                path, min_freq_thz=self.source["min_freq_THz"], targets=tuple(self.source["targets"])
            )
        elif reader == "castelli":
            dataset, skipped = public_data.read_castelli_perovskites(path, target=self.source["targets"][0])
        elif reader == "matcalc":
            dataset, skipped = public_data.read_matcalc_structures(
                path,
                {k: self.source["unit"] for k in self.source["targets"]},
                self.source["id_key"],
                transform=self.source.get("transform"),
            )
        else:
            raise ValueError(f"unknown reader {reader!r}")
        return dataset, skipped, path


# CGCNN as in the accuracy benchmarks (docs/benchmarks.md): AdamW, lr 2e-3 with a cosine schedule per
# batch, batches of 64; an L1 loss, which gave lower test errors than MSE on phonondb (30-epoch trials:
# U MAE/MAD 0.0124 against 0.0184) and equal ones on the perovskites.
_CGCNN_TRAIN = {
    "epochs": 150,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 2e-3,
    "scheduler": "cosine",
    "loss": "l1",
}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="phonons-300K",
            version=1,
            title="Phonon internal energy, heat capacity, entropy and free energy at 300 K",
            source={
                "path": "phonondb/phonondb-300K.jsonl.gz",
                "reader": "phonondb",
                "description": "phonondb (A. Togo, 2018-04-17 release), thermal properties at 300 K "
                "from phonopy 4.10 on the released force sets",
                "functional": "PBEsol",
                "licence": "CC BY 4.0",
                "targets": ["U", "Cv", "S", "F"],
                "min_freq_THz": -0.5,
                "filters": "dynamically unstable materials (lowest frequency below -0.5 THz) left out",
            },
            # Sum pooling: the targets are per primitive cell, so they scale with the cell. On one split
            # of this data plain sum-pooled CGCNN beat de-CGCNN (sum) and the width-64 ALIGNN (Table 2
            # of docs/benchmarks.md) and needs no descriptors at prediction time.
            model={"architecture": "cgcnn", "pooling": "sum"},
            # errors compared per atom in the loss: better per atom and per cell than per-cell L1 in a
            # 30-epoch trial (U 0.0116 / 0.0504 against 0.0124 / 0.0546 MAE/MAD per cell / per atom)
            train=dict(_CGCNN_TRAIN, epochs=120, loss_per_atom=True),
            extensive={t: "primitive cell" for t in ("U", "Cv", "S", "F")},
            limits="Harmonic phonons of dynamically stable crystals at 300 K only (no anharmonicity, no "
            "thermal expansion). Targets are per mole of primitive cells: a cell given as a supercell or "
            "conventional cell is reduced to its primitive cell first.",
        ),
        Recipe(
            name="perovskite-formation",
            version=1,
            title="Heat of formation of cubic ABX3 perovskites",
            source={
                "path": "perovskites/castelli-perov5-part-a.csv.gz",
                "reader": "castelli",
                "description": "Castelli et al. cubic perovskites (CMR database, via the CDVAE perov_5 "
                "split), part of it",
                "functional": "RPBE",
                "licence": "MIT (CDVAE redistribution of CMR data)",
                "targets": ["heat_all"],
                "filters": "none",
            },
            model={"architecture": "cgcnn", "pooling": "mean"},
            train=dict(_CGCNN_TRAIN),
            members=8,  # cheap (5-atom cells): more members, a steadier mean
            # every cell is one ABX3 formula unit; mean pooling gives the same value for any supercell
            extensive={"heat_all": "formula unit"},
            limits="Only cubic 5-atom ABX3 perovskites (X = O, N, S, F and their mixtures) were seen; "
            "any other structure type is out of its domain whatever its elements.",
        ),
        Recipe(
            name="elastic-moduli",
            version=1,
            title="log10 bulk and shear modulus (Voigt-Reuss-Hill) of binary compounds",
            source={
                "path": "mp-elasticity/mp-binary-pbe-elasticity-2025.1.json.gz",
                "reader": "matcalc",
                "description": "Materials Project elastic tensors of binary compounds (Jan 2025), via "
                "the matcalc benchmark data",
                "functional": "PBE",
                "licence": "BSD-3-Clause (matcalc); Materials Project data CC BY 4.0",
                "targets": ["bulk_modulus_vrh", "shear_modulus_vrh"],
                "unit": "GPa",
                "id_key": "mp_id",
                "transform": "log10",
                "filters": "records with a non-positive modulus left out (no log10)",
            },
            model={"architecture": "cgcnn", "pooling": "mean"},
            train=dict(_CGCNN_TRAIN),
            limits="Binary compounds only; moduli of mechanically unstable or very soft (< 1 GPa) "
            "materials are poorly represented.",
        ),
    )
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"no pretrained model {name!r}; choose from {sorted(RECIPES)}")
    return RECIPES[name]
