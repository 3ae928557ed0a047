"""User-facing errors: one clear line, exit code 2, no traceback."""

from __future__ import annotations


class BenchError(Exception):
    """An error the user can fix (bad YAML, unknown name, missing data, bad weights file)."""

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
