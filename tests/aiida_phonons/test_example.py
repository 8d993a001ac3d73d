"""``examples/phonon_comparison.py`` end to end, as a user runs it: ``verdi presto`` on an empty AiiDA
configuration, then ``verdi run`` (smaller: fewer training crystals and epochs than the default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "phonon_comparison.py"
VERDI = str(Path(sys.executable).parent / "verdi")


@pytest.mark.slow
def test_verdi_run_on_a_fresh_presto_profile(tmp_path):
    env = {
        **os.environ,
        "AIIDA_PATH": str(tmp_path / "aiida"),
        "OMP_NUM_THREADS": "1",
        # the example's CalcJob runs the ``aiida-cgcnn`` executable of this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("AIIDA_PROFILE", None)
    work = tmp_path / "run"
    work.mkdir()
    (tmp_path / "aiida").mkdir()

    presto = subprocess.run([VERDI, "presto"], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert presto.returncode == 0, presto.stdout + presto.stderr

    run = subprocess.run(
        [VERDI, "run", str(EXAMPLE), "--", "--n-train", "16", "--epochs", "3"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "1. EMT phonons of 16 crystals" in output
    assert "ModelData<" in output and "targets ['U', 'Cv']" in output
    # five unseen crystals compared; bcc Cu is dynamically unstable under EMT and left out
    assert "PhononComparisonWorkChain<" in output and "5 compared at 300 K" in output
    assert "left out Cu_bcc: imaginary modes" in output
    for prop in ("U: MAE", "Cv: MAE"):
        assert prop in output
    assert (work / "phonon_parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the provenance is in the profile the user made: one comparison, finished, of a U and Cv model
    script = tmp_path / "query.py"
    script.write_text(
        "from aiida import orm\n"
        "label = {'attributes.process_label': 'PhononComparisonWorkChain'}\n"
        "query = orm.QueryBuilder().append(orm.WorkflowNode, filters=label, project='*')\n"
        "nodes = [n for (n,) in query.all()]\n"
        "print(len(nodes), nodes[0].is_finished_ok, '+'.join(nodes[0].inputs.model.targets))\n"
    )
    listed = subprocess.run(
        [VERDI, "run", str(script)], env=env, cwd=work, capture_output=True, text=True, timeout=300
    )
    assert listed.stdout.split() == ["1", "True", "U+Cv"], listed.stdout + listed.stderr
