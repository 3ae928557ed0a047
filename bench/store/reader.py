"""The PostgreSQL role `bench sql` runs as: `bench_reader`, NOLOGIN, allowed to SELECT bench's and Optuna's tables
and nothing else, so a side-effecting function the statement check misses fails for lack of privilege.

Created (when the connecting role may create roles) and granted whenever bench creates or migrates its schema or
opens Optuna's, so tables added later are granted too; all of it is read first, and written only when something
is missing. Other login roles may use `bench sql` once an administrator grants them `bench_reader`.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from bench.core.errors import BenchError
from bench.store.lock import SCHEMA_LOCK, database_lock

READER_ROLE = "bench_reader"
BENCH_TABLES = ("runs", "run_epochs", "bench_alembic_version")
OPTUNA_TABLES = ("studies", "study_directions", "study_system_attributes", "study_user_attributes",
                 "trial_heartbeats", "trial_intermediate_values", "trial_params", "trial_system_attributes",
                 "trial_user_attributes", "trial_values", "trials", "version_info", "alembic_version")
READER_TABLES = BENCH_TABLES + OPTUNA_TABLES
log = logging.getLogger("bench")

_ROLE_EXISTS = text("SELECT count(*) FROM pg_roles WHERE rolname = :role")
_UNGRANTED = text(
    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relkind IN ('r', 'p', 'v') AND c.relname = ANY(:tables) "
    "AND NOT has_table_privilege(:role, c.oid, 'SELECT') ORDER BY 1"
)
_CREATE_ROLE = f"""DO $$BEGIN
  CREATE ROLE {READER_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END$$"""
_JOIN_ROLE = f"""DO $$BEGIN
  IF NOT pg_has_role(current_user, '{READER_ROLE}', 'MEMBER') THEN
    EXECUTE 'GRANT {READER_ROLE} TO ' || quote_ident(current_user);
  END IF;
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN NULL;
END$$"""


def missing_grants(connection: Connection) -> list[str] | None:
    """Bench's and Optuna's tables in the current schema that `bench_reader` may not SELECT (None: no role)."""
    if not connection.execute(_ROLE_EXISTS, {"role": READER_ROLE}).scalar_one():
        return None
    return list(connection.execute(_UNGRANTED, {"tables": list(READER_TABLES), "role": READER_ROLE}).scalars())


def _grant(connection: Connection) -> None:
    """Create the role if it is missing (its creator joins it, to use bench sql), let it use the schema and SELECT
    every table of ours not yet granted."""
    connection.exec_driver_sql(_CREATE_ROLE)
    connection.exec_driver_sql(_JOIN_ROLE)
    schema = connection.exec_driver_sql("SELECT quote_ident(current_schema())").scalar_one()
    if not connection.execute(text("SELECT has_schema_privilege(:role, current_schema(), 'USAGE')"),
                              {"role": READER_ROLE}).scalar_one():
        connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {READER_ROLE}")
    for table in missing_grants(connection) or []:
        quoted = connection.execute(text("SELECT quote_ident(:t)"), {"t": table}).scalar_one()
        connection.exec_driver_sql(f"GRANT SELECT ON {schema}.{quoted} TO {READER_ROLE}")


def grant_reader(engine: Engine) -> None:
    """Make `bench_reader` exist and SELECT every bench and Optuna table here (PostgreSQL only; a no-op when it
    already does). A role that may not create roles or grant gets one warning: bench sql then says what to do."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as connection:
            if missing_grants(connection) == []:
                return  # only read: nothing to write (a read-only session works)
        with database_lock(engine.url.render_as_string(hide_password=False), SCHEMA_LOCK), \
                engine.begin() as connection:
            _grant(connection)
    except DBAPIError as error:
        reason = " ".join(str(error.orig or error).split("\n")[0].split())[:200]
        log.warning("bench sql's role %s could not be created or granted here (%s); an administrator can run "
                    "`CREATE ROLE %s NOLOGIN` and `GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s`",
                    READER_ROLE, reason, READER_ROLE, READER_ROLE)


def set_reader_role(connection: Connection, what: str = "bench sql") -> None:
    """Inside the open transaction, act as `bench_reader` until it ends; one-line BenchError when it cannot
    (`what` names the user SQL that needs the role: bench sql, or a command's --where)."""
    user = connection.exec_driver_sql("SELECT session_user").scalar_one()
    if not connection.execute(_ROLE_EXISTS, {"role": READER_ROLE}).scalar_one():
        raise BenchError(f"{what} runs on PostgreSQL as the role {READER_ROLE!r}, which this server lacks: run "
                         "`bench run` once as the database's owner with CREATEROLE (it creates and grants it), or "
                         f"have an administrator run `CREATE ROLE {READER_ROLE} NOLOGIN` and `GRANT SELECT ON ALL "
                         f"TABLES IN SCHEMA public TO {READER_ROLE}`")
    member = connection.execute(text("SELECT pg_has_role(session_user, :role, 'MEMBER')"),
                                {"role": READER_ROLE}).scalar_one()
    if not member:
        raise BenchError(f"{what} runs on PostgreSQL as the role {READER_ROLE!r} (SELECT on bench's and "
                         f"Optuna's tables only), and --db connects as {user!r}, not a member: have an "
                         f"administrator run `GRANT {READER_ROLE} TO {user}`")
    connection.exec_driver_sql(f"SET LOCAL ROLE {READER_ROLE}")
