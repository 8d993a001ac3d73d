"""Every exit code of the phonon work chains on a real profile: a reference relaxed by the engine, an
engine that fails, force work chains that fail or break aiida-phonopy's contract, and the comparison's
codes for some, all or no crystals left. Small supercells and meshes: the numbers are not the point here,
save for the relaxation, which is checked against EMT's own minimum."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import WorkChain, run_get_node
from aiida_phonopy.data import PhonopyData, PreProcessData
from ase.build import bulk

from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain
from aiida_cgcnn.workflows.phonon_reference import PhononReferenceWorkChain

from .test_phonon_comparison import EMT, _builder

#: Enough to run phonopy end to end in a second: 8-atom supercells of the 1-atom cells, a coarse mesh.
TINY = {"supercell_matrix": [2, 2, 2], "mesh": 10.0, "gamma_acoustic": "exclude"}
REFERENCE = PhononReferenceWorkChain.exit_codes
COMPARISON = PhononComparisonWorkChain.exit_codes


# --- force work chains that go wrong ------------------------------------------------------------------


class FailingForceWorkChain(WorkChain):
    """A force work chain whose (pretend) DFT calculations fail: it returns its own exit code."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("preprocess_data", valid_type=(PreProcessData, PhonopyData))
        spec.outline(cls.run_forces)
        spec.exit_code(402, "ERROR_SCF_NOT_CONVERGED", message="the SCF of supercell_1 did not converge")

    def run_forces(self):
        return self.exit_codes.ERROR_SCF_NOT_CONVERGED


class ContractBreakingWorkChain(WorkChain):
    """A force work chain that finishes well but returns energies, not ``phonopy_data`` or
    ``supercells_forces``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("preprocess_data", valid_type=(PreProcessData, PhonopyData))
        spec.outline(cls.run_forces)
        spec.output("energies", valid_type=orm.List)

    def run_forces(self):
        self.out("energies", orm.List([-3.5]).store())


class MisfitForcesWorkChain(WorkChain):
    """A force work chain that returns ``supercells_forces`` as the contract says, but forces of 3 atoms
    for supercells of 8."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("preprocess_data", valid_type=(PreProcessData, PhonopyData))
        spec.outline(cls.run_forces)
        spec.output_namespace("supercells_forces", valid_type=orm.ArrayData, dynamic=True)

    def run_forces(self):
        for label in self.inputs.preprocess_data.get_supercells_with_displacements():
            forces = orm.ArrayData()
            forces.set_array("forces", np.zeros((3, 3)))
            self.out(f"supercells_forces.{label.replace('supercell', 'forces')}", forces.store())


def _reference(structure, **inputs):
    common = {"phonopy": orm.Dict(TINY), "temperatures": orm.List([300.0])}
    return run_get_node(PhononReferenceWorkChain, structure=structure, **{**common, **inputs})


def test_a_force_workchain_that_fails_is_named_with_its_exit_status(aiida_profile):
    structure = orm.StructureData(ase=bulk("Cu", "fcc", a=3.59)).store()
    workchain = orm.Str(f"{__name__}:FailingForceWorkChain")
    results, node = _reference(structure, force_workchain=workchain)
    assert node.exit_status == REFERENCE.ERROR_FORCE_WORKCHAIN_FAILED.status
    called = [n for n in node.called if n.process_class is FailingForceWorkChain]
    assert len(called) == 1 and called[0].exit_status == 402
    assert f"<{called[0].pk}>" in node.exit_message
    assert "exit status 402: the SCF of supercell_1 did not converge" in node.exit_message
    assert "thermal_properties" not in results and "primitive_structure" in results


def test_a_force_workchain_that_breaks_the_contract_is_named(aiida_profile):
    structure = orm.StructureData(ase=bulk("Cu", "fcc", a=3.59)).store()
    results, node = _reference(structure, force_workchain=orm.Str(f"{__name__}:ContractBreakingWorkChain"))
    assert node.exit_status == REFERENCE.ERROR_FORCE_WORKCHAIN_CONTRACT.status
    assert "neither `phonopy_data` nor `supercells_forces`" in node.exit_message
    assert "thermal_properties" not in results


def test_forces_that_do_not_fit_the_supercells_are_named(aiida_profile):
    """Not a failure of the thermal analysis further on: the force work chain's output is named."""
    structure = orm.StructureData(ase=bulk("Cu", "fcc", a=3.59)).store()
    results, node = _reference(structure, force_workchain=orm.Str(f"{__name__}:MisfitForcesWorkChain"))
    assert node.exit_status == REFERENCE.ERROR_FORCE_WORKCHAIN_FORCES.status, node.exit_message
    assert "forces_1 has shape (3, 3), not (8, 3)" in node.exit_message
    assert "thermal_properties" not in results


def test_a_cell_phonopy_cannot_set_up(aiida_profile):
    """An F-centring primitive matrix for a CsCl cell, which is primitive already."""
    from ase import Atoms

    cscl = Atoms("CsCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[4.1] * 3, pbc=True)
    structure = orm.StructureData(ase=cscl).store()
    results, node = _reference(
        structure, engine=orm.Dict(EMT), phonopy=orm.Dict({**TINY, "primitive_matrix": "F"})
    )
    assert node.exit_status == REFERENCE.ERROR_INVALID_SETUP.status
    assert "phonopy cannot set up" in node.exit_message and "primitive matrix 'F'" in node.exit_message
    assert "primitive_structure" not in results


def test_an_engine_that_cannot_relax_or_compute_forces(aiida_profile):
    """EMT knows no Fe: the relaxation fails first when asked for, else the forces."""
    iron = orm.StructureData(ase=bulk("Fe", "bcc", a=2.87)).store()
    relax = orm.Dict({**EMT, "relax": {"fmax": 0.01}})
    results, node = _reference(iron, engine=relax)
    assert node.exit_status == REFERENCE.ERROR_RELAXATION_FAILED.status
    assert "relaxation" in node.exit_message and "Fe" in node.exit_message
    assert "relaxed_structure" not in results
    results, node = _reference(iron, engine=orm.Dict(EMT))
    assert node.exit_status == REFERENCE.ERROR_FORCES_FAILED.status
    assert "forces" in node.exit_message and "NotImplementedError" in node.exit_message


def test_the_engine_relaxes_the_cell_to_its_own_minimum_before_the_phonons(aiida_profile):
    """Cu strained to a = 3.70 Å relaxes to EMT's equilibrium (from ASE's equation of state here), and
    the phonons are those of the relaxed cell, not of the strained one."""
    from ase.calculators.emt import EMT as EMTCalculator
    from ase.eos import EquationOfState

    volumes, energies = [], []
    for a in np.linspace(3.50, 3.68, 10):
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = EMTCalculator()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies).fit()
    a0 = (4 * v0) ** (1 / 3)  # the fcc primitive cell is a quarter of the cube

    strained = orm.StructureData(ase=bulk("Cu", "fcc", a=3.70)).store()
    engine = {**EMT, "relax": {"fmax": 1e-4, "cell": True}}
    results, node = _reference(strained, engine=orm.Dict(engine))
    assert node.is_finished_ok, node.exit_message
    relaxation = results["relaxation"].get_dict()
    assert relaxation["converged"] and relaxation["max_force_eV_per_angstrom"] <= 1e-4
    assert relaxation["steps"] >= 1
    relaxed = results["relaxed_structure"].get_ase()
    assert relaxed.get_volume() == pytest.approx(v0, rel=1e-3)
    assert results["primitive_structure"].get_ase().get_volume() == pytest.approx(relaxed.get_volume())
    assert np.linalg.norm(results["primitive_structure"].cell[0]) * np.sqrt(2) == pytest.approx(a0, abs=2e-3)

    # the phonons are the relaxed cell's: computed from it without relaxing again, the same numbers
    again, _ = _reference(results["relaxed_structure"], engine=orm.Dict(EMT))
    for key in ("U_kJmol", "Cv_JKmol", "S_JKmol", "F_kJmol"):
        assert results["thermal_properties"][key] == pytest.approx(again["thermal_properties"][key], rel=1e-9)


# --- the comparison: some, all or no crystals left --------------------------------------------------


def test_no_reference_succeeds(models):
    iron = {"Fe": bulk("Fe", "bcc", a=2.87), "Fe2": bulk("Fe", "fcc", a=3.6)}
    results, node = run_get_node(_builder(iron, phonopy=TINY, model=models["both"]))
    assert node.exit_status == COMPARISON.ERROR_NO_REFERENCE.status
    assert "comparison" not in results and "references" not in results
    failed = [n for n in node.called if n.process_class is PhononReferenceWorkChain]
    assert len(failed) == 2 and all(n.exit_status == REFERENCE.ERROR_FORCES_FAILED.status for n in failed)


def test_a_failed_force_workchain_leaves_its_crystal_out(models, fcc_metals):
    builder = _builder({"Cu": fcc_metals["Cu"]}, engine=None, phonopy=TINY, model=models["both"])
    builder.reference.force_workchain = orm.Str(f"{__name__}:FailingForceWorkChain")
    results, node = run_get_node(builder)
    assert node.exit_status == COMPARISON.ERROR_NO_REFERENCE.status
    assert "references" not in results and "primitive_structures" in results
    (reference,) = [n for n in node.called if n.process_class is PhononReferenceWorkChain]
    assert reference.exit_status == REFERENCE.ERROR_FORCE_WORKCHAIN_FAILED.status


def test_only_unstable_crystals_leave_nothing_to_compare(models, bcc_copper):
    results, node = run_get_node(_builder({"Cu_bcc": bcc_copper}, phonopy=TINY, model=models["both"]))
    assert node.exit_status == COMPARISON.ERROR_NOTHING_TO_COMPARE.status
    comparison = results["comparison"].get_dict()
    assert comparison["n_compared"] == 0 and comparison["compared"] == []
    assert "imaginary modes" in comparison["excluded"]["Cu_bcc"]
    assert results["references"]["Cu_bcc"]["min_freq_THz"] < -0.5  # computed, then left out


@pytest.fixture(scope="module")
def feature_model_checkpoint(tmp_path_factory):
    """A model of U and Cv that also needs a per-structure feature of the user's own (a pressure)."""
    from aiida_cgcnn.training.dataset import CrystalDataset
    from aiida_cgcnn.training.trainer import Trainer

    metals = ["Cu", "Al", "Ni", "Ag", "Au", "Pd"]
    structures = [bulk(m, "fcc", a=3.6 + 0.1 * k) for k, m in enumerate(metals)]
    targets = np.column_stack([np.linspace(7, 8, 6), np.linspace(23, 24, 6)])
    dataset, _ = CrystalDataset.from_structures(
        structures, targets, target_names=["U", "Cv"], units=["kJ/mol", "J/(K mol)"]
    )
    dataset.features, dataset.feature_names = np.linspace(0, 1, 6)[:, None], ["pressure"]
    result = Trainer(
        dataset,
        tmp_path_factory.mktemp("feature-model"),
        model_config={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16},
        train_config={"epochs": 1, "batch_size": 4},
        workers=1,
        progress=False,
    ).fit()
    return result.best_checkpoint


def test_a_model_that_cannot_predict_fails_the_prediction_step(aiida_profile, feature_model_checkpoint):
    from aiida_cgcnn.data.model import ModelData

    model = ModelData.get_or_create(feature_model_checkpoint)
    results, node = run_get_node(_builder({"Cu": bulk("Cu", "fcc", a=3.59)}, phonopy=TINY, model=model))
    assert node.exit_status == COMPARISON.ERROR_PREDICTION_FAILED.status
    assert "pressure" in node.exit_message
    assert "Cu" in results["references"] and "comparison" not in results
