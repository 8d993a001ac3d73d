"""``aiida-cgcnn provenance``: the ``verdi data cgcnn.model`` commands (:mod:`.verdi`) under the core
command, loaded only when run, so that ``aiida-cgcnn train`` and the other core commands import no AiiDA.
"""

from __future__ import annotations

import typing as t

import click

__all__ = ["model_group"]


class _Provenance(click.Group):
    """Stands for :data:`.verdi.provenance_group` until it is used."""

    @staticmethod
    def _group() -> click.Group:
        from .verdi import provenance_group

        return provenance_group

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: t.Any
    ) -> click.Context:
        return self._group().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> t.Any:
        return self._group().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._group().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._group().get_command(ctx, cmd_name)


#: ``aiida-cgcnn provenance`` (the name ``model_group`` is kept for ``cli.main``).
model_group = _Provenance(
    "provenance",
    help="Models, datasets and predictions in an AiiDA profile (the same as `verdi data cgcnn.model`).",
)
