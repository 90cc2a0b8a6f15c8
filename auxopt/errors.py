"""User-facing errors.

Every mistake a user can make (a task that does not exist, an empty split, a storage URL that does not
parse, ...) raises :class:`AuxoptError` with one sentence naming the problem and the fix. The CLI prints
these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AuxoptError(ValueError):
    """A problem with the user's input, described so that the user can fix it."""


def check_integer(owner: str, key: str, value: object, low: int) -> int:
    """``value`` when it is an integer (not a bool) of at least ``low``; else an :class:`AuxoptError`
    that names ``owner``'s setting ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise AuxoptError(f"{owner}: {key} must be an integer >= {low}, not {value!r}")
    return value
