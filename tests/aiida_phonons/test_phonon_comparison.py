"""The ``cgcnn.phonon_comparison`` and ``cgcnn.phonon_reference`` work chains on a real profile, with real
phonopy, real EMT forces and phonondb's real DFT force sets."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import calcfunction, run_get_node
from aiida.plugins import WorkflowFactory
from aiida_phonopy.workflows.phonopy import PhonopyWorkChain
from ase.build import bulk

from aiida_cgcnn.calculations.functions.phonons import engine_forces, import_phonopy_calculation
from aiida_cgcnn.phonons import GAS_CONSTANT_JKMOL, PhononSettings
from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain
from aiida_cgcnn.workflows.phonon_reference import PhononReferenceWorkChain
from tests.phonons.conftest import assert_reproduces_table
from tests.phonons.test_io import write_phonondb_layout
from tests.phonons.test_thermal import _plain_phonopy

from .conftest import EMT_PHONOPY

EMT = {"calculator": "ase.calculators.emt.EMT"}
EXACT = {**EMT_PHONOPY, "gamma_acoustic": "exclude"}  # deterministic to the last digits (see PhononSettings)


def _builder(structures=None, phonopy_data=None, engine=EMT, phonopy=EXACT, temperatures=(300.0,), **models):
    builder = PhononComparisonWorkChain.get_builder()
    if structures:
        builder.structures = {k: orm.StructureData(ase=v) for k, v in structures.items()}
    if phonopy_data:
        builder.phonopy_data = phonopy_data
    for key, node in models.items():
        builder[key] = node
    if engine is not None:
        builder.reference.engine = orm.Dict(engine)
    builder.reference.phonopy = orm.Dict(phonopy)
    builder.reference.temperatures = orm.List(list(temperatures))
    return builder


def test_emt_references_equal_phonopy_and_the_unstable_crystal_is_left_out(models, fcc_metals, bcc_copper):
    crystals = {**fcc_metals, "Cu_bcc": bcc_copper}
    temperatures = [300.0, 10000.0]
    results, node = run_get_node(_builder(crystals, temperatures=temperatures, model=models["both"]))
    assert node.is_finished_ok, node.exit_message

    for name, atoms in fcc_metals.items():
        record = results["references"][name].get_dict()
        u, cv, n_q = _plain_phonopy(atoms, temperatures, exclude_gamma_acoustic=True)
        np.testing.assert_allclose(record["U_kJmol"], u, rtol=1e-8)
        np.testing.assert_allclose(record["Cv_JKmol"], cv, rtol=1e-8)
        # Debye limits: below 3R·N, and at 10000 K 3R·N less the Γ acoustic modes' share
        limit = 3 * GAS_CONSTANT_JKMOL * record["natoms"]
        assert record["natoms"] == len(results["primitive_structures"][name].sites) == 1
        assert all(c < limit for c in record["Cv_JKmol"])
        assert record["Cv_JKmol"][1] == pytest.approx(limit - 3 * GAS_CONSTANT_JKMOL / n_q, rel=1e-4)
        assert record["stable"] and record["per"] == "mole of primitive cells"

    comparison = results["comparison"].get_dict()
    assert comparison["compared"] == sorted(fcc_metals) and comparison["n_compared"] == 3
    assert "imaginary modes" in comparison["excluded"]["Cu_bcc"]
    assert (
        not results["references"]["Cu_bcc"]["stable"]
        and results["references"]["Cu_bcc"]["min_freq_THz"] < -0.5
    )
    for prop, key in (("U", "U_kJmol"), ("Cv", "Cv_JKmol")):
        ref = np.array([results["references"][n][key][0] for n in sorted(fcc_metals)])
        pred = np.array([results["predictions"][n][key] for n in sorted(fcc_metals)])
        assert comparison[prop]["mae"] == pytest.approx(np.abs(pred - ref).mean(), rel=1e-12)
        assert comparison[prop]["mae_over_mad"] == pytest.approx(
            np.abs(pred - ref).mean() / np.abs(ref - ref.mean()).mean(), rel=1e-12
        )
        assert comparison[prop]["unit"] in ("kJ/mol", "J/(K mol)")
    # the model saw phonopy's primitive cells: its prediction through the predictor matches
    predictor = models["both"].get_predictor()
    direct = predictor.predict([results["primitive_structures"]["Al"].get_ase()]).values[0]
    assert results["predictions"]["Al"]["U_kJmol"] == pytest.approx(float(direct[0]), rel=1e-6)
    assert results["parity_plot"].get_content(mode="rb")[:4] == b"\x89PNG"


def test_two_models_and_a_failed_crystal(models):
    """Separate U and Cv models; Fe, which EMT does not know, fails alone (exit code 401)."""
    crystals = {"Cu": bulk("Cu", "fcc", a=3.59), "Fe": bulk("Fe", "bcc", a=2.87)}
    small = {"supercell_matrix": [3, 3, 3], "mesh": 10.0}
    results, node = run_get_node(
        _builder(crystals, phonopy=small, model_u=models["u"], model_cv=models["cv"])
    )
    assert node.exit_status == PhononComparisonWorkChain.exit_codes.ERROR_SOME_REFERENCES_FAILED.status
    comparison = results["comparison"].get_dict()
    assert comparison["compared"] == ["Cu"]
    assert "reference failed" in comparison["excluded"]["Fe"] and "forces" in comparison["excluded"]["Fe"]
    assert "Fe" not in results["references"]
    prediction = results["predictions"]["Cu"].get_dict()
    assert prediction["models"] == {"U": models["u"].uuid, "Cv": models["cv"].uuid}


@pytest.mark.data
def test_phonondb_force_sets_reproduce_the_table_through_the_workchain(models, phonondb):
    names = [
        "materials-id-1000-bate-fm-3m-225",
        "materials-id-27801-tlagi2-i4-mcm-140",
        "materials-id-10175-kcdf3-pm-3m-221",
    ]
    data = {f"m{k}": import_phonopy_calculation(phonondb["archives"][name]) for k, name in enumerate(names)}
    results, node = run_get_node(
        _builder(phonopy_data=data, engine=None, phonopy={"mesh": 50.0}, model=models["both"])
    )
    assert node.is_finished_ok, node.exit_message
    for label, name in zip(data, names, strict=True):
        table, record = phonondb["table"][name], results["references"][label].get_dict()
        assert record["nac"] == table["has_born"]
        u, cv = record["U_kJmol"][0], record["Cv_JKmol"][0]
        assert_reproduces_table(u, cv, record["n_qpoints"], table, name)
        np.testing.assert_allclose(results["primitive_structures"][label].cell, table["lattice"], atol=1e-6)
    comparison = results["comparison"].get_dict()
    assert comparison["compared"] == ["m0", "m1"] and "imaginary modes" in comparison["excluded"]["m2"]
    assert comparison["reference_source"] == "phonopy data (forces given)"


def _launch_error(builder=None, **kwargs) -> str:
    """The message of the ValueError a launch raises (validation at the door, before anything runs);
    with keyword arguments, the builder is made inside, as some ports validate on assignment."""
    with pytest.raises(ValueError) as info:
        run_get_node(builder if builder is not None else _builder(**kwargs))
    return str(info.value)


def test_bad_inputs_get_clear_errors(models, fcc_metals, tmp_path):
    from aiida_phonopy.data import PreProcessData

    copper = import_phonopy_calculation(write_phonondb_layout(tmp_path / "cu", fcc_metals["Cu"]))
    conventional = bulk("Cu", "fcc", a=3.59, cubic=True)  # 4 atoms: not the 1-atom primitive cell
    message = _launch_error(
        _builder({"cu": conventional}, phonopy_data={"cu": copper}, engine=None, model=models["both"])
    )
    assert (
        "structure 'cu' (Cu4, 4 atoms) is not the primitive cell of phonopy_data 'cu' (Cu1, 1 atoms)"
        in message
    )

    setup = PreProcessData(
        structure=orm.StructureData(ase=fcc_metals["Cu"]), supercell_matrix=[2, 2, 2]
    ).store()
    message = _launch_error(_builder(phonopy_data={"cu": setup}, engine=None, model=models["both"]))
    assert "phonopy_data 'cu'" in message and "missing forces" in message

    message = _launch_error(_builder(fcc_metals, model=models["energy"]))
    assert "has no U target" in message and "emt_energy" in message
    message = _launch_error(_builder(fcc_metals, model=models["ev"]))
    assert "unit 'eV'" in message and "kJ/mol per mole of primitive cells" in message
    message = _launch_error(_builder(fcc_metals, model_u=models["u"], model_cv=models["u"]))
    assert "no Cv target" in message
    message = _launch_error(_builder(fcc_metals, model=models["both"], model_u=models["u"]))
    assert "either `model`" in message
    builder = _builder(fcc_metals, model=models["both"])
    builder.model_temperature = orm.Float(600.0)
    assert "600 K is not among the reference temperatures" in _launch_error(builder)
    message = _launch_error(
        structures=fcc_metals, model=models["both"], phonopy={"mesh": 20, "supercel": [2, 2, 2]}
    )
    assert "unknown phonopy settings ['supercel']" in message
    message = _launch_error(structures=fcc_metals, model=models["both"], engine={"kwargs": {}})
    assert "an engine needs 'calculator'" in message
    builder = _builder(
        {"cu": conventional},
        model=models["both"],
        phonopy={**EMT_PHONOPY, "primitive_matrix": [[0.5, 0, 0], [0, 1, 0], [0, 0, 1]]},
    )
    assert "structure 'cu'" in _launch_error(builder)


# --- the hook for AiiDA force calculations -----------------------------------------------------------


@calcfunction
def _collect(**forces):
    return dict(forces)


class EMTPhonopyWorkChain(PhonopyWorkChain):
    """A stand-in for a DFT force work chain: aiida-phonopy's ``PhonopyWorkChain`` contract, forces from
    EMT. It gets ``preprocess_data`` and returns ``supercells_forces`` and ``phonopy_data``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.setup, cls.run_supercells, cls.run_forces, cls.inspect_forces, cls.run_results)

    def run_forces(self):
        supercells = dict(self.outputs["supercells"])
        self.ctx.forces = engine_forces(engine=orm.Dict(EMT), **supercells)

    def inspect_forces(self):
        for key, value in self.ctx.forces.items():
            self.out(f"supercells_forces.{key}", value)


def test_force_workchain_hook_gives_the_engine_result(fcc_metals):
    structure = orm.StructureData(ase=fcc_metals["Cu"]).store()
    common = {"structure": structure, "phonopy": orm.Dict(EXACT), "temperatures": orm.List([300.0])}
    engine, engine_node = run_get_node(PhononReferenceWorkChain, engine=orm.Dict(EMT), **common)
    hook, hook_node = run_get_node(
        PhononReferenceWorkChain, force_workchain=orm.Str(f"{__name__}:EMTPhonopyWorkChain"), **common
    )
    assert engine_node.is_finished_ok and hook_node.is_finished_ok, hook_node.exit_message
    for key in ("U_kJmol", "Cv_JKmol", "S_JKmol", "F_kJmol"):
        assert hook["thermal_properties"][key] == pytest.approx(engine["thermal_properties"][key], rel=1e-12)
    called = [n for n in hook_node.called if n.process_class is EMTPhonopyWorkChain]
    assert len(called) == 1 and called[0].is_finished_ok
    assert WorkflowFactory("cgcnn.phonon_reference") is PhononReferenceWorkChain


def test_reference_inputs_are_validated():
    with pytest.raises(ValueError, match="exactly one of `structure`"):
        run_get_node(PhononReferenceWorkChain, engine=orm.Dict(EMT))
    structure = orm.StructureData(ase=bulk("Cu", "fcc", a=3.59))
    with pytest.raises(ValueError, match="missing forces"):
        run_get_node(PhononReferenceWorkChain, structure=structure)
    with pytest.raises(ValueError, match=r"no work chain with entry point 'no\.such'"):
        run_get_node(PhononReferenceWorkChain, structure=structure, force_workchain=orm.Str("no.such"))
    # an import path to something that is not a work chain is refused at launch, not when submitted
    not_a_workchain = orm.Str("aiida_cgcnn.phonons.settings:PhononSettings")
    with pytest.raises(ValueError, match=r"PhononSettings.*is <class .*, not a WorkChain class"):
        run_get_node(PhononReferenceWorkChain, structure=structure, force_workchain=not_a_workchain)
    assert PhononSettings.from_dict(EXACT).gamma_acoustic == "exclude"


@pytest.mark.slow
def test_engine_on_a_computer_through_aiida_phonopy_and_pythonjob(
    fcc_metals, aiida_code_installed, aiida_localhost
):
    """``engine_code``: the engine runs in PythonJobs (one per supercell) of aiida-phonopy's
    PhonopyAseWorkChain on a computer, here the localhost; the same numbers as in-process."""
    import sys

    aiida_localhost.set_minimum_job_poll_interval(0.2)
    aiida_localhost.set_default_mpiprocs_per_machine(1)
    python = aiida_code_installed(
        label="python-phonons",
        filepath_executable=sys.executable,
        default_calc_job_plugin="pythonjob.pythonjob",
        prepend_text="export OMP_NUM_THREADS=1",
    )
    structure = orm.StructureData(ase=fcc_metals["Cu"]).store()
    common = {"structure": structure, "engine": orm.Dict(EMT), "phonopy": orm.Dict(EXACT)}
    remote, node = run_get_node(PhononReferenceWorkChain, engine_code=python, **common)
    assert node.is_finished_ok, node.exit_message
    jobs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]  # the PythonJobs
    assert jobs and all(job.is_finished_ok for job in jobs)
    local, _ = run_get_node(PhononReferenceWorkChain, **common)
    for key in ("U_kJmol", "Cv_JKmol"):
        assert remote["thermal_properties"][key] == pytest.approx(local["thermal_properties"][key], rel=1e-12)


def test_a_group_of_structures_is_compared_with_each_crystal_linked(models, fcc_metals):
    """A group, as users keep their crystals, becomes the ``structures`` namespace: labels from the
    nodes' labels, every structure an input of the work chain."""
    from aiida_cgcnn.workflows.phonon_comparison import structures_from_group

    group = orm.Group(label="phonon-comparison-fcc").store()
    nodes = []
    for name, atoms in fcc_metals.items():
        node = orm.StructureData(ase=atoms)
        node.label = f"{name}-fcc"  # not a link label as it stands
        nodes.append(node.store())
    group.add_nodes([*nodes, orm.Dict({"not": "a structure"}).store()])

    builder = PhononComparisonWorkChain.get_builder_from_group("phonon-comparison-fcc")
    assert sorted(builder.structures) == sorted(f"{name}_fcc" for name in fcc_metals)
    builder.model = models["both"]
    builder.reference.engine = orm.Dict(EMT)
    builder.reference.phonopy = orm.Dict(EXACT)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert results["comparison"]["compared"] == sorted(f"{name}_fcc" for name in fcc_metals)
    linked = {link.node.uuid for link in node.base.links.get_incoming(node_class=orm.StructureData).all()}
    assert linked == {n.uuid for n in nodes}
    assert "phonon-comparison-fcc" in node.description

    nodes[1].label = nodes[0].label  # clashing labels: pk<pk> instead
    assert sorted(structures_from_group(group)) == sorted(f"pk{n.pk}" for n in nodes)
    with pytest.raises(ValueError, match="no single group 'no-such-group'"):
        structures_from_group("no-such-group")
