"""The error of a dataset problem, at the bottom of datasets/ (everything there raises it)."""
from __future__ import annotations


class DatasetError(ValueError):
    """A dataset problem that stops training; the message says what to fix."""


def user_message(exc: BaseException) -> str:
    """The human part of a DatasetError's message.

    A DatasetError raised in a DataLoader worker comes back to the main
    process with the worker's traceback prepended to its message; this returns
    only the text the error was raised with.
    """
    text = str(exc)
    marker = "DatasetError: "
    if "Original Traceback" in text and marker in text:
        return text[text.rindex(marker) + len(marker):].strip()
    return text
