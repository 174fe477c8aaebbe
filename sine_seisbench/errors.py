"""Errors caused by the user's input (a missing file, a misspelled key, an unknown weights name).

The ``sine`` command prints such an error as one line and exits with status 2; any other exception is a bug and
keeps its traceback. Library functions raise the subclasses below so that callers can still catch them as the
built-in exception they used to be (a :class:`ConfigError` is also a :class:`ValueError`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input; the message is one line that names the file or key and what to do."""


class ConfigError(UserError, ValueError):
    """A malformed config file or an unknown/invalid config key."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the closest of ``choices`` (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(text).split())


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""
