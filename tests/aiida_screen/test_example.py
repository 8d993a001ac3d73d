"""``examples/screen_alloys.py`` as a user runs it: ``verdi presto`` on an empty AiiDA configuration,
then ``verdi run`` (smaller than the default: 30 alloys in 3 shards)."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_cgcnn.pretrained.registry import available

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "screen_alloys.py"
VERDI = str(Path(sys.executable).parent / "verdi")


NEEDS_PHONONS_300K = pytest.mark.skipif(
    "phonons-300K" not in available(), reason="the pretrained model 'phonons-300K' is not installed"
)


@pytest.mark.slow
@NEEDS_PHONONS_300K
def test_verdi_run_screens_a_group_on_a_fresh_presto_profile(fresh_presto):
    env, work = fresh_presto

    arguments = ["--structures", "30", "--shard-size", "10", "--top-k", "3"]
    run = subprocess.run(
        [VERDI, "run", str(EXAMPLE), "--", *arguments],
        env=env, cwd=work, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "exit status 0" in output
    assert "30 structures in 3 shards: 30 predicted, 0 invalid, 0 in failed shards, 3 selected" in output
    ranked = [line.split()[0] for line in output.splitlines() if line.startswith(("   1.", "   2.", "   3."))]
    assert ranked == ["1.", "2.", "3."]
    # the CSV the example wrote is the table: a header, a units row, 30 structures, three selected
    with open(work / "runs" / "screen-alloys" / "screening.csv") as handle:
        lines = [
            line for line in handle if not line.startswith("# cgcnn") and not line.startswith("# criterion")
        ]
    header, units, *rows = list(csv.reader(lines))
    assert units[0] == "# units" and len(rows) == 30
    selected = [row for row in rows if row[header.index("selected")] == "true"]
    assert sorted(int(row[header.index("rank")]) for row in selected) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.data
@NEEDS_PHONONS_300K
@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="needs chgnet (the phonons extra)")
def test_phonondb_example_ranks_unseen_crystals_and_verifies_with_chgnet(shared_data, fresh_presto):
    """``examples/screen_phonondb.py`` on 40 unseen phonondb crystals: the printed ranking is by the
    predicted Cv per atom, each line carries the table's DFT value, and the best is verified with
    CHGNet + phonopy."""
    env, work = fresh_presto
    arguments = ["--structures", "40", "--shard-size", "20", "--top-k", "3", "--verify-count", "1"]
    run = subprocess.run(
        [VERDI, "run", str(ROOT / "examples" / "screen_phonondb.py"), "--", *arguments],
        env=env, cwd=work, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "40 unseen phonondb crystals in 2 shards: 40 predicted, 0 invalid, 3 selected" in output
    ranked = [line.split() for line in output.splitlines() if line.startswith(("   1.", "   2.", "   3."))]
    assert [r[0] for r in ranked] == ["1.", "2.", "3."]
    scores = [float(r[3]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # the ensemble never saw these crystals; phonondb's DFT value per atom is within 0.5 J/(K mol)
    dft = [float(r[-1]) for r in ranked]
    assert all(abs(s - d) < 0.5 for s, d in zip(scores, dft, strict=True)), ranked
    (verified,) = [line for line in output.splitlines() if line.strip().startswith("top1_pk")]
    predicted, chgnet = float(verified.split()[4].rstrip(",")), float(verified.split()[6].rstrip(","))
    assert abs(predicted - chgnet) / chgnet < 0.05, verified
    assert (work / "runs" / "screen-phonondb" / "verification-parity.png").stat().st_size > 1000
