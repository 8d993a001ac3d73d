"""The computer's cache directory: from its property or its work directory, linked into the job by bash."""

import getpass
import subprocess

from aiida_cgcnn.calculations.remote_cache import (
    CACHE_LINK,
    CACHE_PROPERTY,
    cache_link_script,
    remote_cache_directory,
)


def test_default_is_beside_the_work_directory_as_before(aiida_computer_local, tmp_path):
    computer = aiida_computer_local(label=f"default-{tmp_path.name}")
    # the directory earlier versions reached as ../../../cgcnn-cache from a calculation's folder
    assert remote_cache_directory(computer) == f"{computer.get_workdir().rstrip('/')}/cgcnn-cache"


def test_the_job_script_links_the_configured_directory(aiida_computer_local, tmp_path):
    computer = aiida_computer_local(label=f"configured-{tmp_path.name}")
    configured = tmp_path / "a dir with $pace" / "{username}" / "cache"
    computer.set_property(CACHE_PROPERTY, str(configured))
    job = tmp_path / "job"
    job.mkdir()
    subprocess.run(["bash", "-c", cache_link_script(computer)], cwd=job, check=True)
    expected = tmp_path / "a dir with $pace" / getpass.getuser() / "cache"
    assert expected.is_dir()
    assert (job / CACHE_LINK).resolve() == expected.resolve()
