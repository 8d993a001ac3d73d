"""Read back the text tables of ``verdi data cgcnn.model|cgcnn.dataset`` and ``aiida-cgcnn provenance``."""

from __future__ import annotations

import re


def table_rows(output: str) -> list[dict[str, list[str]]]:
    """The rows of a table the commands print (tabulate's simple format): per row, each column's lines
    (a cell of several lines spans the following lines, whose first column is blank)."""
    lines = output.splitlines()
    rule = next(k for k, line in enumerate(lines) if line.startswith("---"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    headers = [lines[rule - 1][a:b].strip() for a, b in spans]
    rows: list[dict[str, list[str]]] = []
    for line in lines[rule + 1 :]:
        cells = [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0] :].strip()]
        if cells[0] or not rows:
            rows.append({h: [] for h in headers})
        for header, cell in zip(headers, cells, strict=True):
            if cell:
                rows[-1][header].append(cell)
    return rows


def show_fields(output: str) -> dict[str, str]:
    """The name-value pairs a ``show`` command prints (an empty value leaves the name alone)."""
    pairs = [re.split(r"\s{2,}", line, maxsplit=1) for line in output.splitlines()]
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
