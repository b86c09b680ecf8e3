"""User-facing errors.

Every error that a user can cause by bad input (a recipe key, a data file, a label) is a
`TextCNNError`. The CLI turns it into a one-line message and exit code 2, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any


class TextCNNError(ValueError):
    """Bad input from the user: a one-line message that says what was expected and what arrived."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_classes(classes: Sequence[Any], *, source: str = "y") -> None:
    """A classifier needs two classes at least, as scikit-learn's do (one class would give a
    model that says 1.0 for anything); `source` names the labels in the message."""
    if len(classes) < 2:
        found = ", ".join(repr(c) for c in classes) or "none"
        raise TextCNNError(f"{source}: expected at least 2 classes in the training labels, "
                           f"got {len(classes)} class{'' if len(classes) == 1 else 'es'}: {found}")
