"""A self-contained demo: EMT energies of random fcc/bcc alloys, a CGCNN trained on them, predictions.

EMT (ASE's effective-medium potential) gives real, physically meaningful energies in milliseconds,
so the demo needs no data download and no DFT.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["emt_alloys", "run_demo"]

_EMT_METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")


def _fcc_lattice_constant(symbol: str) -> float:
    """ASE's reference fcc lattice constant of ``symbol``, Å."""
    from ase.data import atomic_numbers, reference_states

    a = (reference_states[atomic_numbers[symbol]] or {}).get("a")
    if not isinstance(a, (int, float)):
        raise ValueError(f"ASE has no fcc lattice constant for {symbol}")
    return float(a)


def emt_alloys(n: int, seed: int = 0):
    """``n`` random binary fcc/bcc alloy cells (8 atoms, strained +-3 %, rattled) and their EMT
    energies (eV/atom)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    structures, energies = [], []
    calculator = EMT()
    for _ in range(n):
        a_symbol, b_symbol = rng.choice(_EMT_METALS, size=2, replace=False)
        lattice = str(rng.choice(["fcc", "bcc"]))
        n_b = int(rng.integers(0, 9))
        a_fcc = [_fcc_lattice_constant(s) for s in (a_symbol, b_symbol)]
        a0 = ((8 - n_b) * a_fcc[0] + n_b * a_fcc[1]) / 8  # Vegard's law
        if lattice == "bcc":
            a0 *= 0.5 ** (1 / 3)  # same volume per atom as fcc
        atoms = bulk(a_symbol, lattice, a=a0, cubic=True)
        atoms = atoms.repeat((2, 2, 1) if lattice == "bcc" else (2, 1, 1))
        symbols = np.array([a_symbol] * len(atoms))
        symbols[rng.choice(len(atoms), size=n_b, replace=False)] = b_symbol
        atoms.set_chemical_symbols(symbols.tolist())
        atoms.set_cell(atoms.cell[:] * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        atoms.rattle(stdev=0.03, seed=int(rng.integers(1 << 31)))
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy() / len(atoms))
        atoms.calc = None
        structures.append(atoms)
    return structures, np.array(energies)


def run_demo(
    output_dir: str | Path, n_structures: int = 300, epochs: int = 40, echo: Callable[[str], None] = print
) -> dict:
    """Train on EMT alloys, then predict unseen ones; returns the test metrics."""
    from .predict import Predictor
    from .training.dataset import CrystalDataset
    from .training.trainer import Trainer

    output_dir = Path(output_dir)
    echo(f"Generating {n_structures} alloy cells with EMT energies ...")
    structures, energies = emt_alloys(n_structures, seed=0)
    dataset, _ = CrystalDataset.from_structures(
        structures,
        energies,
        ids=[f"alloy-{k}" for k in range(n_structures)],
        target_names=["emt_energy"],
        units=["eV/atom"],
    )
    dataset.save(output_dir / "alloys.npz")
    echo(f"Training CGCNN for {epochs} epochs (60/20/20 split) ...")
    result = Trainer(
        dataset,
        output_dir / "train",
        train_config={"epochs": epochs, "batch_size": 32},
        cache_dir=output_dir / ".graph-cache",
    ).fit()
    test = result.metrics["test"]
    echo(f"Test MAE {test['mae']:.4f} eV/atom (MAE/MAD {test['mae_over_mad']:.3f}, R² {test['r2']:.3f})")
    new_structures, new_energies = emt_alloys(5, seed=12345)
    prediction = Predictor.from_checkpoint(result.best_checkpoint).predict(new_structures)
    echo("Unseen alloys: EMT vs CGCNN (eV/atom)")
    for atoms, true, pred in zip(new_structures, new_energies, prediction.values[:, 0], strict=True):
        echo(f"  {atoms.get_chemical_formula():>10s}  {true:8.4f}  {pred:8.4f}")
    return test
