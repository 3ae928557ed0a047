"""`bench sql`, `bench report`, `bench runs`, `bench show`: read the results database (never torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import DEFAULT_DB, DbOption, err, one_format, out, print_rows, user_errors
from bench.core.errors import BenchError


def sql(
    query: Annotated[str, typer.Argument(help="one SELECT, WITH ... SELECT, EXPLAIN, VALUES, TABLE or SHOW")],
    db: DbOption = DEFAULT_DB,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    allow_superuser: Annotated[bool, typer.Option(
        "--allow-superuser", help="let a PostgreSQL superuser (or server-file/signal role) run the query")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="seconds the statement may run")] = 300.0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="most rows printed (said when it cuts)")] = 10_000,
) -> None:
    """Query results with one read-only SQL statement (anything that could write or has side effects is refused)."""
    with user_errors():
        from bench.store.session import check_connection
        from bench.store.sql import bounded_query

        one_format(csv, as_json)
        check_connection(db)
        result = bounded_query(db, query, allow_superuser=allow_superuser, timeout_s=timeout, limit=limit)
        print_rows(result.columns, result.rows, csv, as_json)
        if result.cut:
            err.print(f"note: {result.cut}", highlight=False, markup=False, soft_wrap=True)



def report(
    db: DbOption = DEFAULT_DB,
    out_dir: Annotated[Path, typer.Option("--out", help="output directory")] = Path("reports"),
    where: Annotated[str | None, typer.Option(help="SQL filter on runs, e.g. \"dataset = 'digits'\"")] = None,
    formats: Annotated[str, typer.Option("--format", help="comma-separated: md, html, csv, tex")] = "md,html,csv",
) -> None:
    """Write comparison tables (student x teacher per epoch budget), gains over scratch, plots and provenance."""
    with user_errors():
        from bench.report.write import parse_formats, write_report
        from bench.store.session import check_connection

        check_connection(db)

        chosen = parse_formats(formats)
        if out_dir.exists() and not out_dir.is_dir():
            raise BenchError(f"--out {out_dir}: exists and is not a directory; give a directory for the report")
        checks.paths("report", out_dir=out_dir)
        paths = write_report(db, out_dir, where, chosen)
        for path in paths:
            out.print(f"wrote {path}", highlight=False)



def runs(
    db: DbOption = DEFAULT_DB,
    where: Annotated[str | None, typer.Option(help="SQL filter on runs, e.g. \"status != 'done'\"")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="comma-separated run columns to show, e.g. id,method,seed,test_acc,val_acc "
        "[default: what fits the terminal]")] = None,
) -> None:
    """List runs (id, short spec key, what ran, the hyperparameters that differ, status, scores)."""
    with user_errors():
        from bench.report.runs import run_table
        from bench.store.session import check_connection

        one_format(csv, as_json)
        check_connection(db)
        names, rows = run_table(db, where, columns, screen=not (csv or as_json), width=out.width)
        print_rows(names, rows, csv, as_json, fit=columns is None)



def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run id or spec key prefix")],
    db: DbOption = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show one run: every column, then its epochs (loss terms, val accuracy, seconds)."""
    with user_errors():
        from bench.report.runs import epoch_table, find_run
        from bench.store.session import check_connection

        checks.run_ref(run_ref)
        check_connection(db)

        run_row = find_run(db, run_ref)
        epochs = epoch_table(db, int(run_row["id"]))
        if as_json:
            record = {k: (None if _is_missing(v) else v) for k, v in run_row.items()}
            record["epoch_rows"] = json.loads(epochs.to_json(orient="records"))
            sys.stdout.write(json.dumps(record, default=str) + "\n")
            return
        print_rows(["column", "value"], [(k, _show_value(v)) for k, v in run_row.items()], False, False)
        out.print(f"epochs ({len(epochs)})", highlight=False)
        print_rows(list(epochs.columns), [tuple(_show_value(v) for v in row) for row in epochs.itertuples(False)],
                    False, False)



def _is_missing(value: object) -> bool:
    try:
        return bool(value is None or value != value)  # NaN/NaT are not equal to themselves
    except (TypeError, ValueError):
        return False



def _show_value(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)

