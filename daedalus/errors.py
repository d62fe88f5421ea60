"""User-facing errors.

A user's mistake raises a :class:`DaedalusError` subclass. The CLI prints its message as one line and exits
with status 2. Anything else is a bug and keeps its traceback.

Each message names the problem *and* the fix, e.g.
``target column 'incme' not found; did you mean 'income'? Pass --target with one of the file's columns``.
"""

from __future__ import annotations


class DaedalusError(Exception):
    """Base class for every error caused by user input. Its message is one line by construction: a line break
    inside a value it quotes (a column named "a\nb", a path) is shown escaped, as Python writes it."""

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        if any(c in text for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
            text = "".join(c if c.isprintable() or c in " \t" else repr(c)[1:-1] for c in text)
        super().__init__(text, *args)


class DataError(DaedalusError):
    """The data file or frame cannot be used as given (missing, empty, unreadable, bad target...)."""


class ConfigError(DaedalusError):
    """An option is unknown or out of range (metric, family, time budget, storage URL...)."""


class RunError(DaedalusError):
    """A run directory is missing, incomplete or not in the state the command needs."""
