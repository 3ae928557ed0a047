"""The statement check of `bench sql`: one read-only statement, refused before it reaches the server.

sqlglot's tokenizer for the dialect (strings, quoted identifiers, dollar quotes, comments), then an allow-list
of statement kinds and a deny-list of words and functions with side effects. This is the first line only: on
PostgreSQL the statement then runs as a role that may only SELECT (bench/store/reader.py), so a function this
list misses still fails for lack of privilege.
"""

from __future__ import annotations

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

_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite"}  # bench's backend names -> sqlglot's dialects
_LITERALS = {"STRING", "NATIONAL_STRING", "RAW_STRING", "HEREDOC_STRING", "BIT_STRING", "HEX_STRING",
             "BYTE_STRING", "UNICODE_STRING"}


@dataclass(frozen=True)
class Token:
    """One code token: a bare word (lowercased), a quoted identifier, a number, or a punctuation mark."""

    kind: str  # "word", "ident", "number" or "punct"
    text: str


class StatementRefused(BenchError):
    """A statement that is not one read-only statement of an allowed kind; `reason` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bench sql runs one read-only statement ({ALLOWED}); refused: {reason}")
        self.reason = reason


def _refuse(reason: str) -> StatementRefused:
    return StatementRefused(reason)


def _tokens_of(token) -> list[Token]:  # noqa: ANN001 - a sqlglot token
    """Ours for one sqlglot token: none for a literal, one per word of a keyword such as `ORDER BY`."""
    kind = token.token_type.name
    if kind in _LITERALS:
        return []
    if kind == "IDENTIFIER":
        return [Token("ident", token.text.lower())]
    if kind == "NUMBER":
        return [Token("number", token.text.lower())]
    if token.text[:1].isalpha() or token.text[:1] in "_$":
        return [Token("word", word) for word in token.text.lower().split()]
    return [Token("punct", char) for char in token.text]


def tokenize(sql: str, dialect: str) -> list[Token]:
    """Code tokens of `sql` in the given dialect ("postgresql" or "sqlite"), by sqlglot's tokenizer for that
    dialect (its literals, quoted identifiers, dollar quotes, comments, nested in PostgreSQL only); literals and
    comments are dropped. sqlglot keeps what follows a command word (EXPLAIN, SHOW, LOCK, ...) up to the next `;`
    as one raw string: that text is code, so it is tokenized again."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import TokenError

    sqlglot_dialect = Dialect.get_or_raise(_DIALECTS.get(dialect, dialect))
    try:
        found = sqlglot_dialect.tokenize(sql)
    except TokenError:
        raise _refuse("an unterminated quote or comment") from None
    commands = sqlglot_dialect.tokenizer_class.COMMANDS
    tokens: list[Token] = []
    for index, sqlglot_token in enumerate(found):
        previous = found[index - 1] if index else None
        if previous is not None and previous.token_type in commands and sqlglot_token.token_type.name == "STRING":
            tokens += tokenize(sqlglot_token.text, dialect)  # the raw rest of a command: code, not a literal
        else:
            tokens += _tokens_of(sqlglot_token)
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


def check_statement(sql: str, dialect: str) -> str:
    """Raise a one-line BenchError unless `sql` is exactly one read-only statement of an allowed kind; its kind
    (the first word, lowercased) otherwise."""
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
    return first.text
