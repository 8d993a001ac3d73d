"""The ``verdi run`` snippet of docs/aiida.md (Pretrained ensembles) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "aiida.md"


def test_the_documented_snippet_runs(aiida_profile, installed_model, capsys):
    section = DOC.read_text().split("## Pretrained ensembles", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert f'import_pretrained("{installed_model}")' in code
    exec(compile(code, str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert f"pretrained {installed_model} v" in printed and "'std': {'heat_all': " in printed
