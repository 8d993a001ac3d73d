"""A training whose remote work directory is on a full disk: the calculation ends with
``ERROR_DISK_FULL`` (a critical 3xx code: a restart would only fill the disk again) and the work chain
stops at once instead of restarting."""

from __future__ import annotations

from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.remote_cache import CACHE_PROPERTY
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.cli.common import RESERVE_BYTES
from aiida_cgcnn.workflows.train import TrainWorkChain
from tests.tmpfs import pages, small_tmpfs


def test_a_full_work_directory_fails_once_with_its_exit_code(
    aiida_code_installed, cgcnn_executable, dataset_node, small_model, tmp_path
):
    # room for the job's own files (scripts, dataset, logs) and the command's reserve, and less than
    # best.pt and last.pt of the first epoch (about 80 and 150 kB for this model) together need
    size = pages(len(dataset_node.base.repository.get_object_content(dataset_node.filename, mode="rb")))
    size += pages(RESERVE_BYTES) + 200 * 1024
    with small_tmpfs(tmp_path / "disk", size) as disk:
        computer = orm.Computer(
            label=f"full-disk-{tmp_path.name}",
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(disk),
        ).store()
        computer.configure(safe_interval=0.0)
        computer.set_minimum_job_poll_interval(0.2)
        computer.set_default_mpiprocs_per_machine(1)
        computer.set_property(CACHE_PROPERTY, str(tmp_path / "cache"))  # the cache has room
        code = aiida_code_installed(
            label="aiida-cgcnn-full-disk",
            computer=computer,
            filepath_executable=cgcnn_executable,
            prepend_text="export OMP_NUM_THREADS=1",
        )
        builder = TrainWorkChain.get_builder()
        builder.train.code = code
        builder.train.dataset = dataset_node
        builder.train.parameters = orm.Dict({"model": small_model, "train": {"epochs": 3, "batch_size": 8}})
        builder.max_iterations = orm.Int(3)
        _, node = run_get_node(builder)

        (calc,) = node.called  # not restarted
        assert calc.exit_status == TrainCalculation.exit_codes.ERROR_DISK_FULL.status == 330
        assert "No space left on device writing" in calc.exit_message
        assert "Free space there, or give the computer another work directory" in calc.exit_message
        assert str(tmp_path / "cache") in calc.exit_message
        status = calc.outputs.retrieved.get_object_content("status.json")
        assert '"status": "disk_full"' in status  # the command's reserve made room for it
        assert "model" not in calc.outputs and "metrics" not in calc.outputs

        assert node.exit_status == TrainWorkChain.exit_codes.ERROR_DISK_FULL.status == 330
        assert "No space left on device" in node.exit_message
        reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
        assert any("found the disk of its work directory full: not restarting" in r for r in reports)
