"""`bench list` and `bench teachers` (with `fetch`): what the registries hold and which weights are here."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from typer.core import TyperCommand

from bench.cli.common import err, out, user_errors
from bench.core.errors import BenchError


def list_entries(
    what: Annotated[str | None, typer.Argument(help="teachers, students, methods or datasets")] = None,
) -> None:
    """Print every registry (or one): name, kind and a one-line description."""
    with user_errors():
        from bench.cli.listing import REGISTRY_NAMES, listing_rows
        from bench.core.registry import Registry

        if what is not None and what not in REGISTRY_NAMES:
            names = Registry[object]("registry")
            for name in REGISTRY_NAMES:
                names.add(name, name, "registry")
            names.check(what)
        rows = listing_rows()
        for name in REGISTRY_NAMES:
            if what in (None, name):
                out.print(_registry_table(name, rows[name]))  # long cells wrap within the terminal's width
                if name == "teachers":
                    from bench.core.registries import GENERIC_TEACHER_NAMES

                    out.print(f"also any of: {', '.join(GENERIC_TEACHER_NAMES)}", highlight=False, markup=False)
                if name == "students":
                    from bench.core.registries import GENERIC_STUDENT_NAMES

                    out.print(f"also any of: {', '.join(GENERIC_STUDENT_NAMES)}", highlight=False, markup=False)



def _registry_table(name: str, rows: list[list[str]]):  # noqa: ANN202 - a rich Table
    """name, kind, description; students and methods add their hyperparameters with defaults and ranges."""
    from rich.table import Table

    knobs = name in ("students", "methods")
    table = Table(title=name, title_justify="left")
    for column in ("name", "kind", "description"):
        table.add_column(column)
    if knobs:
        table.add_column("hyperparameters (default, valid range)", overflow="fold")
    for entry_name, label, description, hyperparameters in rows:
        table.add_row(entry_name, label, description, *([hyperparameters] if knobs else []))
    return table



def teachers(
    names: Annotated[list[str] | None, typer.Argument(help="teachers to check [default: every registered one]")] = None,
    weights: Annotated[list[str] | None, typer.Option(help="TEACHER=PATH weights file or dir (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    all_paper: Annotated[bool, typer.Option("--all-paper", help="with `fetch`: every teacher of studies/paper-*")
                         ] = False,
) -> None:
    """Each teacher's family, params, embedding dim, input, normalisation, taps and whether its weights are here.

    `bench teachers fetch NAME... [--all-paper]` downloads weights into the hub caches and loads each once.
    """
    with user_errors():
        if names and names[0] == "fetch":  # only reached through the command's own parser (TeachersCommand)
            fetch(names[1:], all_paper)
            return
        from bench.cli.checks import weights as checked_weights
        from bench.teachers.inventory import inventory, inventory_table

        explicit = checked_weights(weights)
        with err.status("teachers") as status:  # one line per teacher while each is looked at (terminals only)

            def progress(index: int, total: int, name: str) -> None:
                status.update(f"teacher {index + 1}/{total}: {name} (weights, architecture on the meta device)")

            infos = inventory(names, explicit, progress)
        if as_json:
            sys.stdout.write(json.dumps([info.as_dict() for info in infos]) + "\n")
            return
        out.print(inventory_table(infos))  # long cells wrap within the terminal's width
        for info in infos:
            if info.missing:
                out.print(f"{info.name}: {info.missing}; `bench teachers fetch {info.name}` downloads it into the "
                          "hub cache (needs a network), or pass --weights NAME=PATH", highlight=False, markup=False)



def fetch(
    names: Annotated[list[str] | None, typer.Argument(help="teachers to download")] = None,
    all_paper: Annotated[bool, typer.Option("--all-paper", help="every teacher of studies/paper-*")] = False,
) -> None:
    """Download teachers' weights into their hub caches and load each once (needs a network).

    One line per teacher fetched; exit 2 with one line per teacher that was not.
    """
    with user_errors():
        _fetch_teachers(names or [], all_paper)


def _fetch_teachers(names: list[str], all_paper: bool) -> None:
    from bench.teachers.fetch import PAPER_TEACHERS, fetch_all

    chosen = list(dict.fromkeys([*names, *(PAPER_TEACHERS if all_paper else ())]))
    if not chosen:
        raise BenchError("bench teachers fetch: name the teachers to fetch, or pass --all-paper")
    fetched, failed = fetch_all(chosen)
    for item in fetched:
        out.print(f"{item.name}: {item.origin} {item.path} (loads: {item.params / 1e6:.1f}M parameters)",
                  highlight=False, markup=False, soft_wrap=True)
    for line in failed:
        err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)



class TeachersCommand(TyperCommand):
    """`bench teachers`, whose first word `fetch` hands the rest to the fetch command: its own options and -h."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # noqa: ANN001 - click.Context
        if args and args[0] == "fetch":
            fetch_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                                    context_settings={"help_option_names": ["-h", "--help"]})
            fetch_app.command("fetch")(fetch)
            typer.main.get_command(fetch_app).main(args[1:], prog_name=f"{ctx.command_path} fetch")
        return super().parse_args(ctx, args)
