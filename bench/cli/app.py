"""`bench` command line: the typer app and its entry point; each command lives in its group's module and
delegates to the package that owns the work."""

from __future__ import annotations

from typing import Annotated

import typer

from bench.cli import artifacts, launch, plan, results, sweep, track, units
from bench.cli.common import out

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # help text is plain: Rich markup would eat "[default: ...]"
    help="Sweep teachers x students x distillation methods x datasets; keep every run in SQL.",
)
COMMANDS = {
    "run": sweep.run, "worker": sweep.worker, "study": sweep.study_command,
    "list": units.list_entries, "teachers": units.teachers,
    "sql": results.sql, "report": results.report, "runs": results.runs, "show": results.show,
    "eval": artifacts.eval_command, "export": artifacts.export_command,
    "plan": plan.plan_command, "track": track.track,
    "launch": launch.launch, "status": launch.status,
}
COMMAND_CLASSES = {"teachers": units.TeachersCommand}  # `bench teachers fetch` is its own command, with its own -h
for _name, _command in COMMANDS.items():
    app.command(_name, cls=COMMAND_CLASSES.get(_name))(_command)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"distill-bench {version('distill-bench')}", highlight=False)
        except PackageNotFoundError:  # run from a checkout that was never installed
            out.print("distill-bench (not installed)", highlight=False)
        raise typer.Exit(0)



@app.callback()
def main_options(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    """Sweep teachers x students x distillation methods x datasets; keep every run in SQL."""



def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="bench")

