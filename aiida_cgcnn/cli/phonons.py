"""``aiida-cgcnn phonons``: phonopy calculations -> training data of U and Cv."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import guarded, write_skipped, write_status

__all__ = ["phonons"]


@click.group()
def phonons() -> None:
    """Phonon references from phonopy calculations (U and Cv per mole of primitive cells)."""


@phonons.command("dataset")
@click.argument("sources", type=click.Path(exists=True, path_type=Path), nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Dataset file (.npz).")
@click.option(
    "-t",
    "--temperature",
    "temperatures",
    type=float,
    multiple=True,
    help="Temperature in K (repeat for several) [300]. One gives targets U and Cv, several "
    "U_<T>K and Cv_<T>K.",
)
@click.option(
    "--mesh",
    default="50",
    show_default=True,
    help="Sampling mesh: a length in Å (Γ-centred) or three integers 'n1,n2,n3'.",
)
@click.option(
    "--min-frequency",
    "stability_threshold",
    type=float,
    default=-0.5,
    show_default=True,
    help="Leave out calculations with a mesh frequency below this (THz): imaginary modes.",
)
@click.option(
    "--nac/--no-nac",
    default=True,
    show_default=True,
    help="Non-analytical term correction where Born charges (BORN) exist.",
)
@click.option(
    "--fc-calculator",
    type=click.Choice(["traditional", "symfc"]),
    default="traditional",
    show_default=True,
    help="Force-constant solver.",
)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes.")
@click.option(
    "--table",
    type=click.Path(path_type=Path),
    help="Also write every stable calculation's U, Cv, S, F and lowest frequency to this JSON-lines file.",
)
@guarded("output")
def dataset(
    sources: tuple[Path, ...],
    output: Path,
    temperatures: tuple[float, ...],
    mesh: str,
    stability_threshold: float,
    nac: bool,
    fc_calculator: str,
    workers: int,
    table: Path | None,
) -> None:
    """Turn phonopy calculations into a dataset of U (kJ/mol) and Cv (J/(K·mol)) per mole of
    primitive cells, the structures being phonopy's primitive cells.

    SOURCES are phonondb archives (.tar.lzma) or folders (POSCAR-unitcell, FORCE_SETS, phonopy.conf,
    BORN), phonopy yaml files with forces (phonopy_params.yaml), or folders of any of these.
    Unstable or unreadable calculations are listed in OUTPUT's .skipped.txt.
    """
    from ..phonons.dataset import phonon_dataset
    from ..phonons.settings import PhononSettings

    numbers = [part for part in mesh.replace(",", " ").split() if part]
    mesh_value: float | tuple[int, ...] = (
        float(numbers[0]) if len(numbers) == 1 else tuple(int(n) for n in numbers)
    )
    settings = PhononSettings(
        mesh=mesh_value, nac=nac, fc_calculator=fc_calculator, stability_threshold_thz=stability_threshold
    )
    data, skipped, records = phonon_dataset(
        list(sources), temperatures or (300.0,), settings, skip_invalid=True, workers=workers
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    data.save(output)
    if table is not None:
        with open(table, "w") as handle:
            for record in records:
                handle.write(json.dumps({"name": record.name, **record.properties.to_dict()}) + "\n")
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Left out {len(skipped)} calculation(s): see {output.with_suffix('.skipped.txt')}")
    write_status(
        output.parent,
        "completed",
        f"{len(data)} calculations",
        skipped=[{"id": s.id, "reason": s.reason} for s in skipped],
    )
    click.echo(f"Wrote {len(data)} structures ({', '.join(data.target_names)}) to {output}")
