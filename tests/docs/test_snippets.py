"""Every code block of README.md and docs/ runs as written (see :mod:`tests.docs.snippets` for the
markers and what "runs" means per language). A snippet that no longer runs fails here.

Shell and Python blocks run in a scratch directory laid out like the repository root: ``.venv``
(this environment), ``examples/`` and ``benchmarks/`` link to the real ones, and ``../shared/data``
to the real data when present. The package's commands come first on ``PATH``; ``verdi`` and
``aiida``-importing Python blocks use a temporary profile of their own (SQLite, made by ``verdi
presto``), never the user's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_cgcnn.training.public_data import shared_data_dir
from tests.docs.setups import SETUPS
from tests.docs.snippets import (
    CONSOLE,
    JSON,
    PYTHON,
    ROOT,
    SHELL,
    Block,
    all_blocks,
    chains,
    console_commands,
    missing_output,
    parse_marker,
)

BIN = Path(sys.executable).parent
#: generous: a loaded 2-core CI machine; the cheap snippets take seconds
TIMEOUT_S = 900

#: Markers for pages others own or generate (``aiida-cgcnn pretrained card`` writes docs/pretrained/*.md),
#: as (page glob, regex on the block's first line, marker), until the pages carry
#: ``<!-- snippet: ... -->`` comments themselves (the same syntax).
EXTERNAL_MARKERS: list[tuple[str, str, str]] = [
    (
        "docs/pretrained*.md",
        r"aiida-cgcnn pretrained build ",
        "skip rebuilds a shipped ensemble: hours of training",
    ),
    (
        "docs/pretrained/*.md",
        r"aiida-cgcnn pretrained build ",
        "skip rebuilds a shipped ensemble: hours of training",
    ),
    (
        "docs/pretrained*.md",
        r"aiida-cgcnn predict --model phonons-300K structures/",
        "setup structures, pretrained:phonons-300K",
    ),
    (
        "docs/pretrained/*.md",
        r"aiida-cgcnn predict --model (?P<name>[\w.-]+) structures/",
        "setup structures, pretrained:{name}",
    ),
    ("docs/pretrained.md", r"aiida-cgcnn pretrained list$", "setup pretrained:phonons-300K"),
    (
        "docs/pretrained.md",
        r"from aiida_cgcnn.ensemble import Ensemble$",
        "setup structures, pretrained:phonons-300K",
    ),
    ("docs/pretrained.md", r"from ase.build import bulk$", "setup pretrained:phonons-300K"),
]
#: Pages whose every block is a measurement of minutes to hours (their outputs are the results).
EXTERNAL_PAGE_SKIPS = {
    "docs/benchmarks.md": (
        "a benchmark run of minutes to hours; its output is the measurement the page reports"
    ),
}


def _apply_external_markers(blocks: list[Block]) -> list[Block]:
    for block in blocks:
        page = block.path.relative_to(ROOT)
        first = block.code.strip().splitlines()[0].strip() if block.code.strip() else ""
        if block.skip is not None or block.setups:
            continue  # the page's own marker wins
        if str(page) in EXTERNAL_PAGE_SKIPS:
            block.skip = EXTERNAL_PAGE_SKIPS[str(page)]
            continue
        for pattern, line, marker in EXTERNAL_MARKERS:
            match = re.match(line, first)
            if page.match(pattern) and match:
                options = parse_marker(marker.format(**match.groupdict()), block.name)
                block.skip, block.setups = options["skip"], options["setups"]
                break
    return blocks


CHAINS = chains(_apply_external_markers(all_blocks()))


def _param(chain: list[Block]):
    marks = [pytest.mark.skip(reason=f"snippet marked skip: {chain[0].skip}")] if chain[0].skip else []
    if any("../shared/data" in b.code for b in chain):
        marks.append(pytest.mark.data)
    if not chain[0].skip and any(
        word in b.code for b in chain for word in ("Trainer(", " train ", "--epochs", "predict_structures")
    ):
        marks.append(pytest.mark.slow)
    return pytest.param(chain, id=chain[0].name, marks=marks)


@pytest.fixture(scope="session")
def aiida_home(tmp_path_factory):
    """A temporary AIIDA_PATH with one SQLite profile (localhost computer, ``aiida-cgcnn`` code)."""
    home = tmp_path_factory.mktemp("aiida-home")
    env = {**os.environ, "AIIDA_PATH": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(BIN / "verdi"), "presto", "--profile-name", "docs-snippets"],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    code = subprocess.run(
        [
            str(BIN / "verdi"),
            "code",
            "create",
            "core.code.installed",
            "--non-interactive",
            "--label",
            "aiida-cgcnn",
            "--computer",
            "localhost",
            "--filepath-executable",
            str(BIN / "aiida-cgcnn"),
            "--default-calc-job-plugin",
            "cgcnn.train",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    assert code.returncode == 0, code.stdout + code.stderr
    return home


def _scratch(tmp_path: Path) -> Path:
    """A directory laid out like the repository root, with ``../shared/data`` beside it."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    for name in ("examples", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    data = shared_data_dir()
    if data is not None:
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(data)
    return work


def _environment(needs_aiida: bool, request) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),  # the setups import tests.*
        "MPLBACKEND": "Agg",
    }
    if needs_aiida:
        env["AIIDA_PATH"] = str(request.getfixturevalue("aiida_home"))
        env.pop("AIIDA_PROFILE", None)  # the temporary profile is the default one there
    return env


def _prepare(chain: list[Block], work: Path) -> tuple[str, bool]:
    """Run the chain's setups' file parts in ``work``; return their Python prelude and whether a
    prelude needs AiiDA."""
    prelude, aiida = [], False
    for name in dict.fromkeys(s for b in chain for s in b.setups):
        key, _, arg = name.partition(":")
        if key not in SETUPS:
            raise ValueError(f"{chain[0].name}: unknown snippet setup {key!r}; known: {sorted(SETUPS)}")
        setup = SETUPS[key]
        if setup.files is not None:
            setup.files(work, arg)
        if setup.prelude and setup.prelude not in prelude:
            prelude.append(setup.prelude)
        aiida |= setup.aiida
    return "\n".join(prelude), aiida


def _run(command: list[str] | str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run in its own process group, so that a timeout ends the command's children too (a shell's
    ``aiida-cgcnn`` would otherwise outlive it)."""
    shell = isinstance(command, str)
    with subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        shell=shell,
        executable="/bin/bash" if shell else None,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"{command!r} ran past {TIMEOUT_S} s:\n{stdout[-2000:]}\n{stderr[-2000:]}"
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _report(what: str, block: Block, run: subprocess.CompletedProcess) -> str:
    return (
        f"{block.name}: {what} (exit {run.returncode})\n--- stdout ---\n{run.stdout[-4000:]}"
        f"\n--- stderr ---\n{run.stderr[-4000:]}"
    )


@pytest.mark.parametrize("chain", [_param(c) for c in CHAINS])
def test_snippet_runs(chain: list[Block], tmp_path, request):
    if any("../shared/data" in b.code for b in chain) and shared_data_dir() is None:
        pytest.skip("needs the real data in ../shared/data (or $AIIDA_CGCNN_DATA), which is absent")
    work = _scratch(tmp_path)
    prelude, prelude_aiida = _prepare(chain, work)
    needs_aiida = prelude_aiida or any(b.needs_aiida for b in chain)
    env = _environment(needs_aiida, request)
    python: list[str] = []  # the chain's Python code so far: later Python blocks run after it
    for position, block in enumerate(chain):
        if block.language in JSON:
            json.loads(block.code)
        elif block.language in SHELL:
            run = _run(f"set -euo pipefail\n{block.code}", work, env)
            assert run.returncode == 0, _report("the shell block failed", block, run)
        elif block.language in CONSOLE:
            for command in console_commands(block.code):
                run = _run(command.text, work, env)
                assert run.returncode == command.exit_code, _report(
                    f"`{command.text}` exited {run.returncode}, the page shows {command.exit_code}",
                    block,
                    run,
                )
                missing = missing_output(command.output, run.stdout + run.stderr)
                assert not missing, _report(f"`{command.text}` did not print {missing}", block, run)
        elif block.language in PYTHON:
            python.append(block.code)
            if position + 1 < len(chain) and chain[position + 1].language in PYTHON:
                continue  # consecutive Python blocks run as one script
            script = work / f"snippet-{position}.py"
            script.write_text(prelude + "\n" + "\n".join(python))
            if needs_aiida:
                command = [str(BIN / "verdi"), "-p", "docs-snippets", "run", str(script)]
            else:
                command = [sys.executable, str(script)]
            run = _run(command, work, env)
            assert run.returncode == 0, _report("the Python block failed", block, run)
        else:  # pragma: no cover - all_blocks only returns runnable languages
            raise AssertionError(f"{block.name}: no runner for {block.language!r}")


def test_markers_are_read():
    """The collector sees the markers: a skip marker carries its reason, setups exist."""
    skipped = [c[0] for c in CHAINS if c[0].skip]
    assert skipped and all(len(b.skip) > 10 for b in skipped)
    known = set(SETUPS)
    for chain in CHAINS:
        for block in chain:
            for name in block.setups:
                assert name.partition(":")[0] in known, f"{block.name}: unknown setup {name!r}"


def test_console_parsing_and_output_patterns():
    from tests.docs.snippets import console_commands, line_pattern

    commands = console_commands(
        "$ aiida-cgcnn dataset create a \\\n      -o b.npz\nError [invalid_input]: bad\n"
        "$ echo $?\n4\n$ ls\nx\n"
    )
    assert [(c.text, c.output, c.exit_code) for c in commands] == [
        ("aiida-cgcnn dataset create a -o b.npz", ["Error [invalid_input]: bad"], 4),
        ("ls", ["x"], 0),
    ]
    pattern = line_pattern("Test MAE 0.0145 eV/atom (MAE/MAD 0.385, R² 0.833)")
    assert pattern.match("Test MAE 0.0203 eV/atom (MAE/MAD 0.4, R² -1.2e-3)")
    assert not line_pattern("Wrote 49 structures to jarvis.npz").match("Wrote 50 structures to jarvis.npz")
    assert not line_pattern("POSCAR-JVASP-10.vasp,0.168").match("POSCAR-JVASP-10,0.168")
    assert line_pattern("trained ... epochs").match("trained 30 epochs")
