"""`bench sql` on PostgreSQL is read-only by privilege: the statement runs as `bench_reader`, which may only SELECT
bench's and Optuna's tables, so index maintenance that writes in a read-only transaction is refused.

brin_summarize_new_values and gin_clean_pending_list are on no deny-list; before the role, both wrote index pages
through `bench sql` (as a superuser with --allow-superuser, and as a non-superuser table owner with no flag).
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.store.reader import READER_ROLE, READER_TABLES
from bench.store.results import Store
from tests.support.records import record

MAINTENANCE = ("SELECT brin_summarize_new_values('brin_t_idx'::regclass) AS brin, "
               "gin_clean_pending_list('gin_t_idx'::regclass) AS gin")
runner = CliRunner()


def _psycopg_url(url: str) -> str:
    return url.replace("+psycopg", "")


def _indexed_table(url: str) -> None:
    """Table t, owned by the role of `url`, with a BRIN index whose ranges are not summarised yet and a GIN index
    whose new entries wait in its pending list (autovacuum off, so only a caller changes either)."""
    import psycopg

    with psycopg.connect(_psycopg_url(url), autocommit=True) as owner:
        owner.execute("CREATE TABLE t (a int, tags int[]) WITH (autovacuum_enabled = off)")
        owner.execute("CREATE INDEX brin_t_idx ON t USING brin (a) WITH (pages_per_range = 1)")
        owner.execute("CREATE INDEX gin_t_idx ON t USING gin (tags) WITH (fastupdate = on)")
        owner.execute("INSERT INTO t SELECT i, ARRAY[i % 7, i % 11] FROM generate_series(1, 3000) AS i")


def _pending_work(url: str) -> tuple[int, int]:
    """What the maintenance would do now, as the owner: (ranges left to summarise, pending pages left)."""
    import psycopg

    with psycopg.connect(_psycopg_url(url), autocommit=True) as owner:
        return owner.execute(MAINTENANCE).fetchone()


@pytest.fixture
def owner_db(postgres_url: str, postgres_server: str) -> dict[str, str]:
    """A bench database (migrated by the superuser) plus a non-superuser login role that owns its own table."""
    import psycopg

    Store(postgres_url).save_run(record("a", test_acc=0.5))
    owner = f"owner_{os.getpid()}_{postgres_url.rsplit('_', 1)[-1]}"
    with psycopg.connect(_psycopg_url(postgres_url), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {owner} LOGIN")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
        admin.execute(f"GRANT {READER_ROLE} TO {owner}")
    owner_url = postgres_url.replace("//bench@", f"//{owner}@")
    return {"super": postgres_url, "owner": owner_url}


@pytest.mark.parametrize(("who", "flags"), [("super", ["--allow-superuser"]), ("owner", [])])
def test_index_maintenance_is_refused_and_the_indexes_are_unchanged(owner_db: dict[str, str], who: str,
                                                                   flags: list[str]) -> None:
    url = owner_db[who]
    _indexed_table(url)
    result = runner.invoke(app, ["sql", "--db", url, *flags, "--", MAINTENANCE])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "must be owner of index" in lines[0] and "Traceback" not in result.stderr, lines
    brin_ranges, gin_pages = _pending_work(url)  # nothing was summarised or cleaned by bench sql
    assert brin_ranges > 5 and gin_pages >= 1, (brin_ranges, gin_pages)
    assert _pending_work(url) == (0, 0)  # the owner did it just now: the check above could see a change


def test_reader_role_selects_bench_and_optuna_tables_only(owner_db: dict[str, str]) -> None:
    """The role exists after a migration, may SELECT bench's tables, not the owner's own, and nothing more."""
    import psycopg

    _indexed_table(owner_db["owner"])
    with psycopg.connect(_psycopg_url(owner_db["super"]), autocommit=True) as admin:
        granted = admin.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s ORDER BY 1, 2", [READER_ROLE]).fetchall()
        login, superuser = admin.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s",
                                         [READER_ROLE]).fetchone()
    assert granted == [(name, "SELECT") for name in ("bench_alembic_version", "run_epochs", "runs")]
    assert not login and not superuser and set(dict(granted)) <= set(READER_TABLES)
    result = runner.invoke(app, ["sql", "--db", owner_db["owner"], "--json", "--", "SELECT count(*) AS n FROM t"])
    assert result.exit_code == 2 and "permission denied for table t" in result.stderr, result.output
    result = runner.invoke(app, ["sql", "--db", owner_db["owner"], "--json", "--", "SELECT count(*) AS n FROM runs"])
    assert result.exit_code == 0 and result.stdout.strip() == '[{"n": 1}]', result.output


def test_optuna_tables_created_later_are_granted(owner_db: dict[str, str]) -> None:
    """Optuna creates its tables after bench's migration; opening its storage grants them to the role too."""
    from bench.sweep.queue import WorkerOptions, open_storage

    assert runner.invoke(app, ["sql", "--db", owner_db["owner"], "--", "SELECT 1"]).exit_code == 0
    open_storage(owner_db["super"], WorkerOptions()).engine.dispose()
    result = runner.invoke(app, ["sql", "--db", owner_db["owner"], "--json", "--",
                                 "SELECT count(*) AS n FROM studies"])
    assert result.exit_code == 0 and result.stdout.strip() == '[{"n": 0}]', result.output


def test_a_role_outside_bench_reader_is_one_line(owner_db: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(owner_db["super"]), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE outsider_{os.getpid()} LOGIN")
    url = owner_db["super"].replace("//bench@", f"//outsider_{os.getpid()}@")
    result = runner.invoke(app, ["sql", "--db", url, "--", "SELECT 1"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert f"GRANT {READER_ROLE} TO outsider_{os.getpid()}" in lines[0]


WHERE_MAINTENANCE = ("brin_summarize_new_values('brin_t_idx'::regclass) >= 0 "
                     "AND gin_clean_pending_list('gin_t_idx'::regclass) >= 0")


@pytest.mark.parametrize("command", [["runs", "--csv"], ["report", "--format", "csv"]])
@pytest.mark.parametrize("who", ["super", "owner"])
def test_a_where_filter_runs_as_the_reader_role(owner_db: dict[str, str], who: str, command: list[str],
                                                tmp_path) -> None:  # noqa: ANN001
    """--where is user SQL too: the same index maintenance in a WHERE clause fails for lack of privilege (before,
    it ran as the connecting role: the superuser, or the table's owner, summarised and cleaned the indexes)."""
    url = owner_db[who]
    _indexed_table(url)
    out = ["--out", str(tmp_path / "report")] if command[0] == "report" else []
    result = runner.invoke(app, [*command, "--db", url, *out, "--where", WHERE_MAINTENANCE])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: --where") and "must be owner of index" in lines[0], lines
    brin_ranges, gin_pages = _pending_work(url)
    assert brin_ranges > 5 and gin_pages >= 1, (brin_ranges, gin_pages)
    plain = runner.invoke(app, [*command, "--db", url, *out, "--where", "test_acc > 0.4"])
    assert plain.exit_code == 0, plain.output  # an ordinary filter still reads, as the same role


def test_a_where_filter_outside_the_reader_role_is_one_line(owner_db: dict[str, str]) -> None:
    import psycopg

    outsider = f"lister_{os.getpid()}"
    with psycopg.connect(_psycopg_url(owner_db["super"]), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {outsider} LOGIN")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {outsider}")
    url = owner_db["super"].replace("//bench@", f"//{outsider}@")
    assert runner.invoke(app, ["runs", "--db", url, "--csv"]).exit_code == 0  # no --where: its grants suffice
    result = runner.invoke(app, ["runs", "--db", url, "--csv", "--where", "test_acc > 0.4"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: --where") and f"GRANT {READER_ROLE} TO {outsider}" in lines[0], lines
