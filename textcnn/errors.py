"""User-facing errors.

Every error that a user can cause by bad input (a recipe key, a data file, a label) is a
`TextCNNError`. The CLI turns it into a one-line message and exit code 2, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TextCNNError(ValueError):
    """Bad input from the user: a one-line message that says what was expected and what arrived."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
