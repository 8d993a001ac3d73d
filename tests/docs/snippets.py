"""The code blocks of README.md and docs/: found, classified and turned into runnable scripts.

A block runs unless the HTML comment right above its fence says otherwise. Markers (invisible in
the rendered page, visible in the Markdown):

``<!-- snippet: skip REASON -->``
    A placeholder or an expensive command (long training, a cluster, a GPU, installing): not run,
    reported as skipped with REASON.
``<!-- snippet: setup NAME[,NAME] -->``
    Run after the named setups of :mod:`tests.docs.setups` (files in the scratch directory for shell
    blocks, variables for Python blocks), e.g. ``structures`` for ``structures/*.cif``.
``<!-- snippet: continue -->``
    The block goes on from the block above it on the same page: both run in the same scratch
    directory, and a Python block runs after the Python code above it in one script.

Several markers combine in one comment, separated by ``;``:
``<!-- snippet: setup alloys; continue -->``; a skip reason runs to the end of the comment.

Languages: ``bash``/``sh``/``shell`` blocks run as a bash script (``set -e``); ``console`` blocks run
command by command (``$ `` prompts, ``\\`` continuations) and the output the page shows must appear,
in order, with decimal numbers free to differ (``...`` matches anything), and ``$ echo $?`` after a
command gives the exit code it must have; ``python`` blocks run in a fresh interpreter, through
``verdi run`` against a temporary AiiDA profile when they import ``aiida``; ``json`` blocks must
parse. ``text`` blocks (output, file layouts) and directives (``{clihelp}``, ``{toctree}``, ...) are
not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SHELL = {"bash", "sh", "shell"}
CONSOLE = {"console"}
PYTHON = {"python", "py", "python3"}
JSON = {"json"}
RUNNABLE = SHELL | CONSOLE | PYTHON | JSON

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
_AIIDA_IMPORT = re.compile(r"^\s*(from aiida(\.\w+)* import|import aiida\b)", re.M)


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None
    setups: list[str] = field(default_factory=list)
    continues: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def needs_aiida(self) -> bool:
        if self.language in PYTHON:
            return bool(_AIIDA_IMPORT.search(self.code))
        return bool(re.search(r"(^|[\s;(|&])verdi\s", self.code))


def markdown_files() -> list[Path]:
    """README.md and every page under docs/ (the build folder left out)."""
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
    return [ROOT / "README.md", *pages]


def parse_marker(body: str, where: str) -> dict:
    options: dict = {"skip": None, "setups": [], "continues": False}
    skip = re.search(r"(?:^|;)\s*skip\b(.*)$", body)
    if skip:  # the reason is the rest of the comment, semicolons included
        if not skip[1].strip():
            raise ValueError(f"{where}: 'snippet: skip' needs a reason")
        options["skip"], body = skip[1].strip(), body[: skip.start()]
    for part in filter(None, (p.strip() for p in body.split(";"))):
        word, _, rest = part.partition(" ")
        if word == "setup":
            options["setups"] += [s.strip() for s in rest.split(",") if s.strip()]
        elif word == "continue":
            options["continues"] = True
        else:
            raise ValueError(f"{where}: unknown snippet marker {word!r}; use skip, setup or continue")
    return options


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of ``path`` whose language is code (see the module docstring)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    k = 0
    while k < len(lines):
        match = _FENCE.match(lines[k])
        if not match:
            k += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        end = k + 1
        while end < len(lines) and not re.match(
            rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]
        ):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[k + 1 : end]
        ]
        language = info.split()[0].lower() if info else ""
        # the marker: the nearest non-blank line above the fence
        above = k - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = _MARKER.match(lines[above]) if above >= 0 else None
        options = parse_marker(marker["body"], f"{path.name}:{k + 1}") if marker else {}
        if language in RUNNABLE:
            blocks.append(Block(path, k + 1, language, "\n".join(body) + "\n", **options))
        elif marker:
            raise ValueError(
                f"{path.name}:{k + 1}: a snippet marker above a {language or 'plain'} block, which never runs"
            )
        k = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in markdown_files() for b in blocks_of(path)]


def chains(blocks: list[Block]) -> list[list[Block]]:
    """Blocks grouped so that a ``continue`` block runs after the Python block(s) above it."""
    groups: list[list[Block]] = []
    for block in blocks:
        if block.continues:
            if not groups or groups[-1][-1].path != block.path or groups[-1][-1].language not in PYTHON:
                raise ValueError(
                    f"{block.name}: 'snippet: continue' needs a Python block above it on its page"
                )
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


# --- console blocks -------------------------------------------------------------------------------


@dataclass
class Command:
    text: str
    output: list[str]
    exit_code: int = 0


def console_commands(code: str) -> list[Command]:
    """``$ command`` lines (with ``\\`` continuations) and the output shown under each; a following
    ``$ echo $?`` becomes the command's expected exit code."""
    commands: list[Command] = []
    lines = code.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if not line.startswith("$ "):
            if commands:
                commands[-1].output.append(line)
            elif line.strip():
                raise ValueError(f"console block starts with output, not a '$ ' command: {line!r}")
            k += 1
            continue
        text = line[2:]
        while text.rstrip().endswith("\\") and k + 1 < len(lines):
            k += 1
            text = text.rstrip()[:-1].rstrip() + " " + lines[k].strip()
        if text.strip() == "echo $?":
            k += 1
            value = lines[k].strip() if k < len(lines) else ""
            if not commands or not value.isdigit():
                raise ValueError("'$ echo $?' must follow a command and show a number")
            commands[-1].exit_code = int(value)
        else:
            commands.append(Command(text.strip(), []))
        k += 1
    return commands


_DECIMAL = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)|[-+]?(?:\d+\.\d*|\.\d+)"


def line_pattern(expected: str) -> re.Pattern:
    """A shown output line as a pattern: decimal numbers (``0.0145``, ``1e-3``) match any number,
    integers must be equal, ``...`` matches anything, runs of spaces match any spacing."""
    parts = []
    for token in re.split(rf"({_DECIMAL}|\.\.\.|\s+)", expected.strip()):
        if not token:
            continue
        if token == "...":
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s+")
        elif re.fullmatch(_DECIMAL, token):
            parts.append(r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)")
        else:
            parts.append(re.escape(token))
    return re.compile(r"^\s*" + "".join(parts) + r"\s*$")


def missing_output(expected: list[str], actual: str) -> list[str]:
    """Shown lines that do not appear, in order, among the actual output's lines."""
    lines = [line for line in actual.splitlines() if line.strip()]
    position, missing = 0, []
    for shown in (s for s in expected if s.strip()):
        pattern = line_pattern(shown)
        for k in range(position, len(lines)):
            if pattern.match(lines[k]):
                position = k + 1
                break
        else:
            missing.append(shown)
    return missing
