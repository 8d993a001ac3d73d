"""Facts the prose states that no snippet runs: defaults, counts, tables of entry points and commands.
Each test reads the claim from the page, so changing either side without the other fails here."""

from __future__ import annotations

import glob
import inspect
import re

import pytest

from tests.docs.snippets import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

DOCS = ROOT / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text()


def test_quickstart_describes_make_demo_and_the_demo_command_as_they_are():
    from aiida_cgcnn.cli.main import demo
    from aiida_cgcnn.workflows.demo import run_aiida_demo

    text = _page("quickstart.md")
    make = (ROOT / "Makefile").read_text()
    assert "verdi run examples/train_and_predict.py" in make and "examples/train_and_predict.py" in text
    defaults = inspect.signature(run_aiida_demo).parameters
    n, epochs = defaults["n_structures"].default, defaults["epochs"].default
    assert f"generates {n} random binary" in text and f"for {epochs} epochs with the `cgcnn.train`" in text
    assert f"1. {n} alloy cells" in text and f"Training CGCNN for {epochs} epochs" in text
    options = {p.name: p.default for p in demo.params}
    assert f"Its defaults are {options['n_structures']} cells and {options['epochs']} epochs" in text
    assert f"the default is `{options['output_dir']}`" in text
    assert "runs/demo" not in text


def test_install_commands_name_the_extras_make_installs():
    make = (ROOT / "Makefile").read_text()
    extras = re.search(r"-e '\.\[([a-z,]+)\]'", make).group(1)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.split(",")) == set(declared), "make installs every extra"
    for text in ((ROOT / "README.md").read_text(), _page("installation.md")):
        found = set(re.findall(r"-e '\.\[([a-z,]+)\]'", text))
        assert found == {extras}, found
    listed = _page("installation.md").split("Extras:", 1)[1]
    assert all(f"`{name}`" in listed for name in declared)


def test_declared_package_data_exists():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, globs in patterns.items():
        for pattern in globs:
            if (
                pattern.startswith("pretrained/models/")
                and not (ROOT / package / "pretrained" / "models").is_dir()
            ):
                continue  # no model installed in this checkout: nothing to ship yet
            assert glob.glob(str(ROOT / package / pattern)), (
                f"package data {package}/{pattern} matches no file"
            )


def test_every_entry_point_is_in_the_aiida_page():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    rows = [line for line in _page("aiida.md").splitlines() if line.startswith("| `aiida.")]
    for group, names in entry_points.items():
        if not group.startswith("aiida."):
            continue
        for name in names:
            assert any(
                f"`{group}:" in row and (f"{group}:{name}`" in row or f"`{name}`" in row) for row in rows
            ), f"docs/aiida.md's entry-point table lacks {group}:{name}"


def _command_paths(command, prefix=()):
    import click

    yield prefix
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _command_paths(sub, (*prefix, name))


def test_every_command_has_its_help_in_the_docs():
    from aiida_cgcnn.cli.main import cli

    pages = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    documented = {tuple(m.split()) for m in re.findall(r"^```\{clihelp\}[ \t]*(.*)$", pages, flags=re.M)}
    missing = [" ".join(path) or "(top level)" for path in _command_paths(cli) if path not in documented]
    assert not missing, f"commands without a {{clihelp}} section in docs/: {missing}"


def test_the_jarvis_sample_is_counted_as_it_is(shared_data):
    folder = shared_data / "jarvis-sample"
    if not folder.is_dir():
        pytest.skip("jarvis-sample is absent from the real data")
    files = len(list(folder.glob("POSCAR-*")))
    rows = len([r for r in (folder / "id_prop.csv").read_text().splitlines() if r.strip()])
    text = _page("quickstart.md")
    assert f"band gaps of {rows} structures" in text and f"the folder holds {files}" in text
