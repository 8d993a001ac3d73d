"""``cgcnn.phonon_reference``: U, Cv, S, F and the stability of one crystal from phonopy.

The phonopy split, as a work chain: set up (aiida-phonopy's ``PreProcessData``), forces from one of
three sources, analysis (:func:`~aiida_cgcnn.calculations.functions.phonons.phonon_thermal_properties`).

Force sources
-------------
``engine``
    An ASE calculator by import path and keyword arguments, run by a calcfunction here, or, with
    ``engine_code`` (a Python on any computer), by aiida-phonopy's ``PhonopyAseWorkChain`` through
    aiida-pythonjob, one job per displaced supercell.
``force_workchain``
    The hook for AiiDA force calculations (DFT codes): any work chain that follows aiida-phonopy's
    ``PhonopyWorkChain`` contract. It is launched with ``preprocess_data`` (the set-up) plus
    ``force_workchain_inputs``, and must return ``phonopy_data`` (``PhonopyData``: forces, and NAC
    parameters if it computes them) or the ``supercells_forces`` namespace (``ArrayData`` with an
    array ``forces``, labelled ``forces_<n>`` after aiida-phonopy's ``supercell_<n>``).
``preprocess_data`` with forces
    Existing data (a ``PhonopyData`` with forces, e.g. a phonondb calculation read by
    :func:`~aiida_cgcnn.calculations.functions.phonons.import_phonopy_calculation`): analysed as is.
"""

from __future__ import annotations

import importlib
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ExitCode, ToContext, WorkChain, if_
from aiida.engine.processes.workchains.workchain import WorkChainSpec
from aiida.plugins import WorkflowFactory
from aiida_phonopy.calculations.functions.data_utils import (
    generate_phonopy_data,
    get_primitive,
    get_supercells_with_displacements,
)
from aiida_phonopy.data import PhonopyData, PreProcessData

from ..calculations.functions.phonons import (
    engine_phonopy_data,
    phonon_thermal_properties,
    phonopy_setup,
    relax_with_engine,
)
from ..phonons.errors import PhononInputError
from ..phonons.forces import EngineSpec
from ..phonons.settings import PhononSettings

__all__ = ["PhononReferenceWorkChain", "load_force_workchain"]


def load_force_workchain(name: str) -> type[WorkChain]:
    """A work chain class: an entry point (``phonopy.ase``) or an import path (``package.module:Class``)."""
    found: Any
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            raise PhononInputError(f"cannot import the force work chain {name!r}: {error}") from error
    else:
        try:
            found = WorkflowFactory(name)
        except Exception as error:
            raise PhononInputError(f"no work chain with entry point {name!r}: {error}") from error
    if not (isinstance(found, type) and issubclass(found, WorkChain)):
        raise PhononInputError(
            f"the force workchain {name!r} is {found!r}, not a WorkChain class; name one that follows "
            "aiida-phonopy's PhonopyWorkChain contract"
        )
    return found


def validate_phonopy_settings(value: orm.Dict | None, _: Any) -> str | None:
    if value is not None:
        try:
            PhononSettings.from_dict(value.get_dict())
        except PhononInputError as error:
            return str(error)
    return None


def validate_engine(value: orm.Dict | None, _: Any) -> str | None:
    if value is not None:
        try:
            EngineSpec.from_dict(value.get_dict())
        except PhononInputError as error:
            return str(error)
    return None


def validate_temperatures(value: orm.List | None, _: Any) -> str | None:
    if value is not None:
        temperatures = value.get_list()
        if not temperatures or any(not isinstance(t, (int, float)) or t < 0 for t in temperatures):
            return f"temperatures must be a non-empty list of numbers >= 0 K, not {temperatures}"
    return None


def validate_force_workchain(value: orm.Str | None, _: Any) -> str | None:
    if value is not None:
        try:
            load_force_workchain(value.value)
        except PhononInputError as error:
            return str(error)
    return None


def _has_forces(node: orm.Node) -> bool:
    return isinstance(node, PhonopyData) and node.forces is not None


def _forces_mismatch(preprocess: PreProcessData, forces: dict[str, orm.Data]) -> str | None:
    """Why a force work chain's ``supercells_forces`` do not fit the displaced supercells of
    ``preprocess`` (one ``forces_<n>`` of shape (atoms, 3) per ``supercell_<n>``), or None."""
    supercells = preprocess.get_supercells_with_displacements()
    expected = {f"forces_{label.removeprefix('supercell_')}": len(s.sites) for label, s in supercells.items()}
    given = {key: value for key, value in forces.items() if key != "forces_0"}  # forces_0: residual forces
    if set(given) != set(expected):
        return f"{sorted(given)} for the supercells {sorted(supercells)}"
    for key, atoms in sorted(expected.items()):
        node = given[key]
        if not isinstance(node, orm.ArrayData) or "forces" not in node.get_arraynames():
            return f"{key} is no ArrayData with an array 'forces'"
        shape = tuple(node.get_shape("forces"))
        if shape != (atoms, 3):
            return f"{key} has shape {shape}, not ({atoms}, 3)"
    return None


def validate_inputs(inputs: dict[str, Any], ctx: Any = None) -> str | None:
    """Exactly one set-up (``structure`` or ``preprocess_data``) and a source of forces."""
    if ctx is not None and not ({"structure", "preprocess_data"} <= set(ctx)):
        # exposed without the set-up ports (the comparison work chain): the exposing process validates
        sources = [key for key in ("engine", "force_workchain") if key in inputs]
        return f"give one source of forces, not both {sources}" if len(sources) > 1 else None
    has_structure, has_preprocess = "structure" in inputs, "preprocess_data" in inputs
    if has_structure == has_preprocess:
        return "give exactly one of `structure` (a unit cell) and `preprocess_data` (a phonopy set-up)"
    sources = [key for key in ("engine", "force_workchain") if key in inputs]
    if len(sources) > 1:
        return f"give one source of forces, not both {sources}"
    if "engine_code" in inputs and "engine" not in inputs:
        return "`engine_code` runs the `engine`: give the engine too"
    if not sources and not (has_preprocess and _has_forces(inputs["preprocess_data"])):
        what = "structure" if has_structure else f"preprocess_data {inputs['preprocess_data'].label!r}"
        return (
            f"missing forces: {what} has no forces; give an `engine`, a `force_workchain`, or a "
            "`preprocess_data` that is a PhonopyData with forces"
        )
    if (
        "force_workchain_inputs" in inputs
        and inputs["force_workchain_inputs"]
        and "force_workchain" not in inputs
    ):
        return "`force_workchain_inputs` without a `force_workchain`"
    return None


def _ase_forces(atoms: Any, engine: dict[str, Any]) -> Any:
    """Forces on ``atoms`` from the engine (run remotely through aiida-pythonjob; imports inside, so
    that the remote Python needs only ASE and the calculator's package)."""
    import importlib as _importlib

    path = engine["calculator"]
    module, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    atoms.calc = getattr(_importlib.import_module(module), attribute)(**(engine.get("kwargs") or {}))
    return atoms.get_forces()


class PhononReferenceWorkChain(WorkChain):
    """U, Cv, S, F (per mole of primitive cells) at ``temperatures`` and the lowest phonon frequency of
    one crystal, with forces from an engine, a force work chain, or existing data."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]  # as aiida's own Process.define
        super().define(spec)
        spec.input(
            "structure",
            valid_type=orm.StructureData,
            required=False,
            help="The unit cell; phonopy's primitive cell of it is the cell U and Cv are per mole of.",
        )
        spec.input(
            "preprocess_data",
            valid_type=(PreProcessData, PhonopyData),
            required=False,
            help="A phonopy set-up (aiida-phonopy): unit cell, supercell and primitive matrices and "
            "displacements; a PhonopyData with forces is analysed as is unless a force source "
            "is given, which then recomputes the forces at its displacements.",
        )
        spec.input(
            "phonopy",
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            validator=validate_phonopy_settings,
            help=f"Phonopy settings (PhononSettings): {', '.join(PhononSettings.keys())}.",
        )
        spec.input(
            "temperatures",
            valid_type=orm.List,
            default=lambda: orm.List([300.0]),
            validator=validate_temperatures,
            help="Temperatures in K [300].",
        )
        spec.input(
            "engine",
            valid_type=orm.Dict,
            required=False,
            validator=validate_engine,
            help="Force engine: {'calculator': 'ase.calculators.emt.EMT', 'kwargs': {...}, "
            "'relax': None or {'fmax': eV/Å, 'steps', 'cell', 'keep_symmetry'}}.",
        )
        spec.input(
            "engine_code",
            valid_type=orm.AbstractCode,
            required=False,
            help="A Python executable (any computer) to run the engine on through aiida-phonopy's "
            "PhonopyAseWorkChain and aiida-pythonjob, one job per displaced supercell; without "
            "it the engine runs here, in a calcfunction.",
        )
        spec.input(
            "force_workchain",
            valid_type=orm.Str,
            required=False,
            validator=validate_force_workchain,
            help="A work chain following aiida-phonopy's PhonopyWorkChain contract (entry point or "
            "'module:Class'); it gets `preprocess_data` and `force_workchain_inputs`.",
        )
        spec.input_namespace(
            "force_workchain_inputs",
            dynamic=True,
            required=False,
            populate_defaults=False,
            help="Inputs of the force work chain besides `preprocess_data`.",
        )
        spec.inputs.validator = validate_inputs

        # aiida types the steps as Callable[[WorkChain], ...], which a subclass's methods are not
        spec.outline(
            cls.setup,  # type: ignore[arg-type]
            if_(cls.should_relax)(cls.relax),  # type: ignore[arg-type]
            cls.set_up_displacements,  # type: ignore[arg-type]
            if_(cls.should_compute_forces)(cls.compute_forces, cls.inspect_forces),  # type: ignore[arg-type]
            cls.analyse,  # type: ignore[arg-type]
        )

        spec.output(
            "thermal_properties",
            valid_type=orm.Dict,
            help="U_kJmol, Cv_JKmol, S_JKmol, F_kJmol over temperatures_K, min_freq_THz, stable, ...",
        )
        spec.output(
            "phonopy_data", valid_type=PhonopyData, help="Set-up, forces and NAC parameters analysed."
        )
        spec.output(
            "primitive_structure",
            valid_type=orm.StructureData,
            help="phonopy's primitive cell: the cell of the references, and what a model must see.",
        )
        spec.output(
            "relaxed_structure",
            valid_type=orm.StructureData,
            required=False,
            help="The unit cell relaxed by the engine, if it relaxed.",
        )
        spec.output(
            "relaxation", valid_type=orm.Dict, required=False, help="converged, steps, final max force."
        )

        spec.exit_code(300, "ERROR_INVALID_SETUP", message="phonopy cannot set up {name}: {error}")
        spec.exit_code(
            310, "ERROR_RELAXATION_FAILED", message="the engine's relaxation of {name} failed: {error}"
        )
        spec.exit_code(320, "ERROR_FORCES_FAILED", message="the engine's forces for {name} failed: {error}")
        spec.exit_code(
            321,
            "ERROR_FORCE_WORKCHAIN_FAILED",
            message="the force work chain <{pk}> for {name} failed: {error}",
        )
        spec.exit_code(
            322,
            "ERROR_FORCE_WORKCHAIN_CONTRACT",
            message="the force work chain <{pk}> for {name} returned neither `phonopy_data` nor "
            "`supercells_forces`",
        )
        spec.exit_code(
            323,
            "ERROR_FORCE_WORKCHAIN_FORCES",
            message="the force work chain <{pk}> for {name} returned forces that do not fit the displaced "
            "supercells: {error}",
        )
        spec.exit_code(
            330, "ERROR_THERMAL_PROPERTIES_FAILED", message="the thermal properties of {name} failed: {error}"
        )

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The crystal's name in messages: the work chain's label, else its input's label or pk."""
        if self.node.label:
            return self.node.label
        node = self.inputs.get("structure") or self.inputs.get("preprocess_data")
        if node is None:  # the inputs' validator makes this impossible; still, a message needs a name
            return f"{type(self).__name__}<{self.node.pk}>"
        return node.label or f"{type(node).__name__}<{node.pk}>"

    @property
    def settings(self) -> PhononSettings:
        return PhononSettings.from_dict(self.inputs.phonopy.get_dict())

    @property
    def engine(self) -> EngineSpec | None:
        return EngineSpec.from_dict(self.inputs.engine.get_dict()) if "engine" in self.inputs else None

    # --- outline ---------------------------------------------------------------------------------

    def setup(self) -> None:
        # the context holds nodes only, so that checkpoints of the running work chain stay plain
        self.ctx.unitcell = self.inputs.get("structure")
        self.ctx.preprocess = self.inputs.get("preprocess_data")

    def should_relax(self) -> bool:
        engine = self.engine
        return engine is not None and engine.relax is not None

    def relax(self) -> ExitCode | None:
        """Relax the unit cell with the engine (universal potentials have their own minimum)."""
        structure = self.ctx.unitcell
        if structure is None:
            structure = self.ctx.preprocess.calcfunctions.get_unitcell()
        try:
            result = relax_with_engine(structure, self.inputs.engine)
        except Exception as error:
            return self.exit_codes("ERROR_RELAXATION_FAILED").format(name=self.name, error=f"{error}")
        self.out("relaxed_structure", result["structure"])
        self.out("relaxation", result["relaxation"])
        if not result["relaxation"]["converged"]:
            self.report(
                f"{self.name}: relaxation not converged (max force "
                f"{result['relaxation']['max_force_eV_per_angstrom']:.2e} eV/Å); continuing"
            )
        self.ctx.unitcell = result["structure"]
        return None

    def set_up_displacements(self) -> ExitCode | None:
        """A ``PreProcessData`` with displacements (kept from ``preprocess_data`` unless relaxed), the
        primitive cell and, for an engine, the displaced supercells."""
        try:
            if self.ctx.unitcell is not None:
                template = {"template": self.ctx.preprocess} if self.ctx.preprocess is not None else {}
                setup = phonopy_setup(structure=self.ctx.unitcell, phonopy=self.inputs.phonopy, **template)
                self.ctx.preprocess = setup["preprocess_data"]
                self.ctx.primitive = setup["primitive_structure"]
                self.ctx.supercells = setup["supercells"]
            else:
                self.ctx.primitive = get_primitive(self.ctx.preprocess)
                self.ctx.supercells = None
        except Exception as error:
            return self.exit_codes("ERROR_INVALID_SETUP").format(name=self.name, error=f"{error}")
        self.out("primitive_structure", self.ctx.primitive)
        self.ctx.phonopy_data = self.ctx.preprocess if _has_forces(self.ctx.preprocess) else None
        return None

    def should_compute_forces(self) -> bool:
        return "engine" in self.inputs or "force_workchain" in self.inputs

    def compute_forces(self) -> dict[str, Any] | ExitCode | None:
        if "force_workchain" in self.inputs:
            process = load_force_workchain(self.inputs.force_workchain.value)
            inputs = AttributeDict(dict(self.inputs.get("force_workchain_inputs", {})))
            inputs.preprocess_data = self.ctx.preprocess
            inputs.metadata = {"call_link_label": "force_workchain", "label": self.name}
            return ToContext(force_workchain=self.submit(process, **inputs))
        if "engine_code" in self.inputs:
            return ToContext(
                force_workchain=self.submit(load_force_workchain("phonopy.ase"), **self._pythonjob_inputs())
            )
        supercells = self.ctx.supercells
        if supercells is None:  # a given set-up (e.g. DFT displacements): its supercells
            supercells = get_supercells_with_displacements(self.ctx.preprocess)
        try:
            self.ctx.phonopy_data = engine_phonopy_data(self.ctx.preprocess, self.inputs.engine, **supercells)
        except Exception as error:
            return self.exit_codes("ERROR_FORCES_FAILED").format(
                name=self.name, error=f"{type(error).__name__}: {error}"
            )
        return None

    def _pythonjob_inputs(self) -> dict[str, Any]:
        """aiida-phonopy's ``PhonopyAseWorkChain`` inputs: the engine in a PythonJob on ``engine_code``."""
        from aiida_pythonjob import prepare_pythonjob_inputs

        pythonjob = prepare_pythonjob_inputs(
            function=_ase_forces,
            function_inputs={
                "atoms": self.ctx.preprocess.get_unitcell().get_ase(),
                "engine": self.inputs.engine.get_dict(),
            },
            code=self.inputs.engine_code,
            register_pickle_by_value=True,
        )
        return {
            "preprocess_data": self.ctx.preprocess,
            "pythonjob": pythonjob,
            "settings": {"max_concurrent_base_workchains": -1},
            "metadata": {"call_link_label": "force_workchain", "label": self.name},
        }

    def inspect_forces(self) -> ExitCode | None:
        node = self.ctx.get("force_workchain")
        if node is None:  # forces came from the calcfunction
            return None
        if not node.is_finished_ok:
            return self.exit_codes("ERROR_FORCE_WORKCHAIN_FAILED").format(
                pk=node.pk, name=self.name, error=f"exit status {node.exit_status}: {node.exit_message}"
            )
        if "phonopy_data" in node.outputs:
            self.ctx.phonopy_data = node.outputs.phonopy_data
        elif "supercells_forces" in node.outputs:
            forces = dict(node.outputs.supercells_forces)
            mismatch = _forces_mismatch(self.ctx.preprocess, forces)
            if mismatch:
                return self.exit_codes("ERROR_FORCE_WORKCHAIN_FORCES").format(
                    pk=node.pk, name=self.name, error=mismatch
                )
            self.ctx.phonopy_data = generate_phonopy_data(preprocess_data=self.ctx.preprocess, **forces)
        else:
            return self.exit_codes("ERROR_FORCE_WORKCHAIN_CONTRACT").format(pk=node.pk, name=self.name)
        return None

    def analyse(self) -> ExitCode | None:
        try:
            thermal = phonon_thermal_properties(
                self.ctx.phonopy_data, self.inputs.phonopy, self.inputs.temperatures
            )
        except Exception as error:
            return self.exit_codes("ERROR_THERMAL_PROPERTIES_FAILED").format(
                name=self.name, error=f"{type(error).__name__}: {error}"
            )
        self.out("phonopy_data", self.ctx.phonopy_data)
        self.out("thermal_properties", thermal)
        return None
