"""``examples/phonon_comparison.py`` end to end, as a user runs it: ``verdi presto`` on an empty AiiDA
configuration, then ``verdi run`` (smaller: fewer training crystals and epochs than the default)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "phonon_comparison.py"
VERDI = str(Path(sys.executable).parent / "verdi")


@pytest.mark.slow
def test_verdi_run_on_a_fresh_presto_profile(fresh_presto, tmp_path):
    env, work = fresh_presto

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
    assert "ModelData<" in output and "targets ['U_300K', 'Cv_300K', 'U_600K', 'Cv_600K']" in output
    # five unseen crystals compared at both temperatures; bcc Cu is unstable under EMT and left out
    assert "PhononComparisonWorkChain<" in output
    assert "5 compared at 300 K" in output and "5 compared at 600 K" in output
    assert output.count("left out Cu_bcc: imaginary modes") == 2
    assert "U: MAE" in output and "kJ/mol" in output and "Cv: MAE" in output
    # the plots go to the output folder, never to the folder it runs in
    for temperature in (300, 600):
        png = work / "runs" / "phonon-comparison" / f"phonon_parity_{temperature}K.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(work.glob("*.png"))

    # the provenance is in the profile the user made: two comparisons, finished, of a U and Cv model
    script = tmp_path / "query.py"
    script.write_text(
        "from aiida import orm\n"
        "label = {'attributes.process_label': 'PhononComparisonWorkChain'}\n"
        "query = orm.QueryBuilder().append(orm.WorkflowNode, filters=label, project='*')\n"
        "nodes = [n for (n,) in query.all()]\n"
        "print(len(nodes), all(n.is_finished_ok for n in nodes), '+'.join(nodes[0].inputs.model.targets))\n"
    )
    listed = subprocess.run(
        [VERDI, "run", str(script)], env=env, cwd=work, capture_output=True, text=True, timeout=300
    )
    assert listed.stdout.split() == ["2", "True", "U_300K+Cv_300K+U_600K+Cv_600K"], (
        listed.stdout + listed.stderr
    )


def test_the_split_is_by_composition():
    """No unseen crystal has a strained sibling (same composition) among the training crystals."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("phonon_comparison_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    names = list(example.crystals())
    unseen, training = example.split_by_composition(names)
    assert len(unseen) == 5 and all(name.endswith("_p0") for name in unseen)
    held_out = {example.composition(name) for name in unseen}
    assert len(held_out) == 5 and not held_out & {example.composition(name) for name in training}
    assert len(training) == len(names) - sum(example.composition(n) in held_out for n in names)
