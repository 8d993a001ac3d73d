"""``cgcnn.table_reference``: a phonon reference read from a table instead of computed.

The same interface as ``cgcnn.phonon_reference`` (inputs ``structure`` and ``temperatures``, outputs
``thermal_properties`` with the same keys and units and ``primitive_structure``), so the
active-learning loop and the comparison can run on real DFT data (phonondb's 300 K table) without
running DFT. The structure is found in the table by its label (an mp id) or by structure matching
against the table's primitive cells of the same reduced formula, so a supercell, a rotated cell or a
permutation of the atoms finds its row; the values are per mole of the table's primitive cell, which
is the ``primitive_structure`` output. The reading is a calcfunction
(:func:`~aiida_cgcnn.calculations.functions.active_learning.table_thermal_properties`): the
provenance graph shows the table's path and sha256 and the row used.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ExitCode, WorkChain
from aiida.engine.processes.workchains.workchain import WorkChainSpec

from ..calculations.functions.active_learning import (
    MATCH_DEFAULTS,
    TableLookupError,
    default_table_path,
    load_phonon_table,
    table_thermal_properties,
)
from .phonon_reference import validate_temperatures

__all__ = ["TableReferenceWorkChain"]


def validate_table(value: orm.Str | None, _: Any) -> str | None:
    if value is not None:
        try:
            load_phonon_table(value.value)
        except TableLookupError as error:
            return str(error)
    return None


def validate_match(value: orm.Dict | None, _: Any) -> str | None:
    if value is not None:
        unknown = sorted(set(value.get_dict()) - set(MATCH_DEFAULTS))
        if unknown:
            return f"unknown match setting(s) {unknown}; known: {sorted(MATCH_DEFAULTS)}"
    return None


class TableReferenceWorkChain(WorkChain):
    """U, Cv, S, F (per mole of primitive cells) of one crystal read from a phonon table."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input(
            "structure",
            valid_type=orm.StructureData,
            help="The crystal (any cell of it: primitive, supercell, rotated, atoms in any order); its "
            "label is tried first as an mp id (``mp-149`` or ``mp_149``).",
        )
        spec.input(
            "temperatures",
            valid_type=orm.List,
            default=lambda: orm.List([300.0]),
            validator=validate_temperatures,
            help="Temperatures in K [300]; each must be tabulated (phonondb: 300 K only).",
        )
        spec.input(
            "table",
            valid_type=orm.Str,
            default=lambda: orm.Str(default_table_path()),
            validator=validate_table,
            help="A JSON Lines file (optionally gzipped) in phonondb's format: per row the primitive cell "
            "(lattice, species, frac_coords) and U_kJmol, Cv_JKmol, S_JKmol, F_kJmol, min_freq_THz at T "
            "[the shared phonondb-300K.jsonl.gz].",
        )
        spec.input(
            "match",
            valid_type=orm.Dict,
            default=lambda: orm.Dict(MATCH_DEFAULTS),
            validator=validate_match,
            help="pymatgen StructureMatcher tolerances: ltol, stol, angle_tol, scale "
            f"[{MATCH_DEFAULTS}]; scale False: a cell of another volume is another crystal.",
        )
        spec.input(
            "stability_threshold",
            valid_type=orm.Float,
            default=lambda: orm.Float(-0.5),
            help="Lowest frequency (THz) above which the crystal counts as stable [-0.5], as phonopy "
            "references do.",
        )
        spec.outline(cls.find, cls.read)  # type: ignore[arg-type]  # aiida types steps as WorkChain methods

        spec.output(
            "thermal_properties",
            valid_type=orm.Dict,
            help="U_kJmol, Cv_JKmol, S_JKmol, F_kJmol over temperatures_K, min_freq_THz, stable, ... "
            "as cgcnn.phonon_reference gives them, and `source`: table, sha256, row id, match.",
        )
        spec.output(
            "primitive_structure",
            valid_type=orm.StructureData,
            help="The table's primitive cell: the cell the values are per mole of.",
        )
        spec.exit_code(
            350,
            "ERROR_NOT_IN_TABLE",
            message="{error}",
        )
        spec.exit_code(
            351,
            "ERROR_TEMPERATURE_NOT_TABULATED",
            message="{error}",
        )

    @property
    def name(self) -> str:
        structure = self.inputs.structure
        return self.node.label or structure.label or f"StructureData<{structure.pk}>"

    def find(self) -> ExitCode | None:
        """Find the row and check the temperatures before anything is stored, for a clean exit code."""
        table = load_phonon_table(self.inputs.table.value)
        try:
            found = table.find(
                self.inputs.structure.get_pymatgen_structure(),
                self.inputs.structure.label,
                self.inputs.match.get_dict(),
            )
        except TableLookupError as error:
            return self.exit_codes("ERROR_NOT_IN_TABLE").format(error=str(error))
        try:
            table.thermal_properties(found.index, self.inputs.temperatures.get_list(), 0.0)
        except TableLookupError as error:
            return self.exit_codes("ERROR_TEMPERATURE_NOT_TABULATED").format(error=f"{self.name}: {error}")
        self.report(f"{self.name}: row {found.id} of {table.path.name} ({found.how}, rms {found.rms:.2g})")
        return None

    def read(self) -> None:
        settings = orm.Dict(
            {
                "match": self.inputs.match.get_dict(),
                "stability_threshold_THz": self.inputs.stability_threshold.value,
            }
        )
        result = table_thermal_properties(
            self.inputs.structure, self.inputs.table, self.inputs.temperatures, settings
        )
        self.out("thermal_properties", result["thermal_properties"])
        self.out("primitive_structure", result["primitive_structure"])
