"""The statement check of `bench sql`: one read-only statement, refused before it reaches the server.

A small tokenizer that knows each dialect's literals (strings, quoted identifiers, dollar quotes, comments),
then an allow-list of statement kinds and a deny-list of words and functions with side effects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.core.errors import BenchError

ALLOWED = "SELECT, WITH ... SELECT, EXPLAIN, VALUES, TABLE or SHOW"
FIRST_WORDS = {"select", "with", "explain", "values", "table", "show"}
EXPLAINED_WORDS = {"select", "with", "values", "table"}
EXPLAIN_OPTIONS = {"analyze", "analyse", "verbose", "query", "plan"}
# words that turn an allowed statement into a write or a lock: data-modifying CTEs, SELECT INTO
WRITE_WORDS = {"insert", "update", "delete", "merge", "into"}
LOCK_AFTER_FOR = {"update", "share", "no", "key"}
SIDE_EFFECT_FUNCTIONS = {
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "set_config",
    "pg_notify", "pg_read_file", "pg_read_binary_file", "pg_stat_file", "nextval", "setval", "pg_promote",
    "pg_log_backend_memory_contexts", "pg_import_system_collations", "pg_current_xact_id", "txid_current",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
    "ts_stat", "ts_rewrite", "load_extension", "fts3_tokenizer",
    "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
}
SIDE_EFFECT_PREFIXES = (
    "pg_advisory_", "pg_try_advisory_", "pg_ls_", "pg_sleep", "lo_", "dblink", "pg_switch_", "pg_create_",
    "pg_drop_", "pg_replication_", "pg_logical_", "pg_stat_reset", "pg_wal_replay_", "pg_backup_",
    "pg_start_backup", "pg_stop_backup", "pg_copy_", "pg_sequence_", "pg_file_",
)

_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")
_PG_LINE_END = re.compile(r"[\r\n]")
_SQLITE_LINE_END = re.compile(r"\n")
_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")


@dataclass(frozen=True)
class Token:
    """One code token: a bare word (lowercased), a quoted identifier, or a punctuation character."""

    kind: str  # "word", "ident" or "punct"
    text: str


class StatementRefused(BenchError):
    """A statement that is not one read-only statement of an allowed kind; `reason` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bench sql runs one read-only statement ({ALLOWED}); refused: {reason}")
        self.reason = reason


def _refuse(reason: str) -> StatementRefused:
    return StatementRefused(reason)


def _skip_quoted(sql: str, start: int, close: str, backslash: bool = False) -> int:
    """The index after the literal opened at `start`; a doubled closer is part of it."""
    i = start + 1
    while i < len(sql):
        if backslash and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == close:
            if i + 1 < len(sql) and sql[i + 1] == close:
                i += 2
                continue
            return i + 1
        i += 1
    raise _refuse("an unterminated quote or comment")


def _skip_block_comment(sql: str, start: int, nested: bool) -> int:
    """The index after the /* ... */ comment at `start` (PostgreSQL nests them, SQLite does not)."""
    depth, i = 1, start + 2
    while i < len(sql):
        if nested and sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise _refuse("an unterminated quote or comment")


def _literal_end(sql: str, i: int, postgres: bool) -> int | None:
    """If a literal or comment starts at `i`, the index after it; None otherwise."""
    char = sql[i]
    if sql.startswith("--", i):  # to the end of the line: \n or \r for PostgreSQL, only \n for SQLite
        end = (_PG_LINE_END if postgres else _SQLITE_LINE_END).search(sql, i)
        return end.end() if end else len(sql)
    if sql.startswith("/*", i):
        return _skip_block_comment(sql, i, nested=postgres)
    if char == "'":
        return _skip_quoted(sql, i, "'")
    if postgres and char in "eE" and sql.startswith("'", i + 1):
        return _skip_quoted(sql, i + 1, "'", backslash=True)
    if postgres and char == "$":
        match = _DOLLAR.match(sql, i)
        if match:
            end = sql.find(match.group(0), match.end())
            if end < 0:
                raise _refuse("an unterminated dollar-quoted string")
            return end + len(match.group(0))
    return None


def _ident_end(sql: str, i: int, postgres: bool) -> int | None:
    """If a quoted identifier starts at `i`, the index after it."""
    char = sql[i]
    if char == '"':
        return _skip_quoted(sql, i, '"')
    if not postgres and char == "`":
        return _skip_quoted(sql, i, "`")
    if not postgres and char == "[":
        end = sql.find("]", i)
        if end < 0:
            raise _refuse("an unterminated [identifier]")
        return end + 1
    return None


def tokenize(sql: str, dialect: str) -> list[Token]:
    """Code tokens of `sql` in the given dialect ("postgresql" or "sqlite"); literals and comments are skipped."""
    postgres = dialect == "postgresql"
    tokens: list[Token] = []
    i = 0
    while i < len(sql):
        if sql[i].isspace():
            i += 1
            continue
        if postgres and sql[i] in "uU" and sql.startswith("&", i + 1):
            raise _refuse("U&'...' escapes are not supported")
        end = _literal_end(sql, i, postgres)
        if end is not None:
            i = end
            continue
        end = _ident_end(sql, i, postgres)
        if end is not None:
            tokens.append(Token("ident", sql[i + 1:end - 1].lower()))
            i = end
            continue
        match = _WORD.match(sql, i) or _NUMBER.match(sql, i)
        if match:
            kind = "word" if match.re is _WORD else "number"
            tokens.append(Token(kind, match.group(0).lower()))
            i = match.end()
            continue
        tokens.append(Token("punct", sql[i]))
        i += 1
    return tokens


def _is_side_effect_function(name: str) -> bool:
    return name in SIDE_EFFECT_FUNCTIONS or name.startswith(SIDE_EFFECT_PREFIXES)


def _check_explain(tokens: list[Token]) -> None:
    """EXPLAIN [ (options) | ANALYZE | VERBOSE | QUERY PLAN ...] of a SELECT/WITH/VALUES/TABLE only."""
    i = 1
    if i < len(tokens) and tokens[i].text == "(":
        depth = 0
        while i < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[i].text, 0) if tokens[i].kind == "punct" else 0
            i += 1
            if depth == 0:
                break
    while i < len(tokens) and tokens[i].kind == "word" and tokens[i].text in EXPLAIN_OPTIONS:
        i += 1
    if i >= len(tokens) or tokens[i].kind != "word" or tokens[i].text not in EXPLAINED_WORDS:
        raise _refuse("EXPLAIN only of a SELECT, WITH, VALUES or TABLE statement")


def _check_words(tokens: list[Token]) -> None:
    """No write keyword, locking clause or side-effect function anywhere outside literals."""
    for index, token in enumerate(tokens):
        if token.kind == "word" and token.text in WRITE_WORDS:
            raise _refuse(f"{token.text.upper()} writes")
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "word" and token.text == "for" and after and after.text in LOCK_AFTER_FOR:
            raise _refuse("FOR UPDATE/SHARE takes row locks")
        if token.kind in ("word", "ident") and _is_side_effect_function(token.text):
            raise _refuse(f"{token.text}() has side effects")


def check_statement(sql: str, dialect: str) -> None:
    """Raise a one-line BenchError unless `sql` is exactly one read-only statement of an allowed kind."""
    tokens = tokenize(sql, dialect)
    if tokens and tokens[-1].text == ";" and tokens[-1].kind == "punct":
        tokens = tokens[:-1]
    if not tokens:
        raise BenchError("bench sql needs a statement, e.g. bench sql \"SELECT count(*) FROM runs\"")
    if any(t.kind == "punct" and t.text == ";" for t in tokens):
        raise _refuse("more than one statement")
    lead = next((i for i, t in enumerate(tokens) if t != Token("punct", "(")), 0)  # `(SELECT 1) UNION (SELECT 2)`
    first = tokens[lead]
    if first.kind != "word" or first.text not in FIRST_WORDS or (first.text == "show" and dialect != "postgresql"):
        raise _refuse(f"{first.text.upper()[:40]} statements")
    if first.text == "explain":
        _check_explain(tokens[lead:])
    _check_words(tokens)
