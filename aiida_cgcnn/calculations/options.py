"""Defaults of the CalcJobs' ``metadata.options``, set on the spec with its types intact."""

from __future__ import annotations

from typing import Any, cast

from aiida.engine import CalcJobProcessSpec
from plumpy.ports import InputPort, PortNamespace

__all__ = ["set_option_defaults"]


def set_option_defaults(spec: CalcJobProcessSpec, **defaults: Any) -> None:
    """Give the options named in ``defaults`` (``parser_name``, ``resources``, ...) these defaults; an
    option with a default is not required, so ``get_builder_restart()`` works on nodes stored without it."""
    options = cast(PortNamespace, cast(PortNamespace, spec.inputs["metadata"])["options"])
    for name, value in defaults.items():
        port = cast(InputPort, options[name])
        port.default = value
        port.required = False
