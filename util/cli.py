"""One-line errors for the command-line tools (no torch here: the ONNX-only path uses it too)."""
from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unexpected_error_line(exc: BaseException, involved: str) -> str:
    """'error: ...' for an error no check foresaw: its type and first line, the file(s) the tool was
    working on, and how to see the traceback."""
    return (f"error: {type(exc).__name__}: {first_line(exc)} (while working on {involved}; run again with "
            f"--debug for the traceback)")
