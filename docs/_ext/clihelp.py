"""Directives that generate command-line reference from the code, so the pages never drift from it.

``clihelp``
    The ``--help`` text of an ``aiida-cgcnn`` command; its arguments are the subcommand words, e.g.
    a ``{clihelp}`` fence with ``dataset create``.
``exit-codes``
    The exit-code table: codes and status names from ``aiida_cgcnn.cli.EXIT_CODES``, meanings from
    the table in the ``aiida_cgcnn.cli`` docstring. A code without a meaning fails the build.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class CliHelp(SphinxDirective):
    optional_arguments = 5
    has_content = False

    def run(self) -> list[nodes.Node]:
        from click.testing import CliRunner

        from aiida_cgcnn.cli.main import cli

        words = list(self.arguments)
        result = CliRunner().invoke(cli, [*words, "--help"], prog_name="aiida-cgcnn", terminal_width=100)
        if result.exit_code != 0:
            raise self.error(f"`aiida-cgcnn {' '.join(words)} --help` failed:\n{result.output}")
        text = result.output.rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class ExitCodes(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        import aiida_cgcnn.cli as cli_package

        meanings = {
            int(m.group(1)): m.group(2).strip()
            for m in re.finditer(r"^(\d+)\s{2,}(.+)$", cli_package.__doc__ or "", flags=re.M)
        }
        rows = []
        for status, code in sorted(cli_package.EXIT_CODES.items(), key=lambda item: item[1]):
            if code not in meanings:
                raise self.error(f"exit code {code} ({status}) has no meaning in the aiida_cgcnn.cli docstring")
            rows.append((str(code), status, meanings[code]))
        return [_table(("code", "status", "meaning"), rows, (1, 2, 8))]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], widths: tuple[int, ...]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=w) for w in widths]

    def row(cells: tuple[str, ...], literal: tuple[bool, ...]) -> nodes.row:
        out = nodes.row()
        for text, is_literal in zip(cells, literal, strict=True):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += nodes.literal(text, text) if is_literal else nodes.Text(text)
            entry += paragraph
            out += entry
        return out

    head = nodes.thead()
    head += row(header, (False,) * len(header))
    body = nodes.tbody()
    for cells in rows:
        body += row(cells, (False, True, False))
    group += [head, body]
    return table


def setup(app: Sphinx) -> dict:
    app.add_directive("clihelp", CliHelp)
    app.add_directive("exit-codes", ExitCodes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
