"""Logging set-up for training runs.

`setup_logger(output, distributed_rank, name)` returns a `logging.Logger` that
writes INFO and above to stdout on the main process (WARNING and above on the
others; coloured with termcolor on a terminal) and, when `output` is given, to that file (`info.txt` in the output
dir; other ranks write `info.txt.rank<N>`). Calling it again replaces the
handlers it installed, so a second `main()` in one process does not print
every line twice; `remove_handlers` takes them off at the end of a run.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"
_MARK = "_dino_handler"


class ColorfulFormatter(logging.Formatter):
    """The plain format's text with termcolor colours: the '[time name' prefix green, WARNING
    yellow and ERROR/CRITICAL red (setup_logger uses it where colour is wanted: use_color)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from termcolor import colored

        level = record.levelname
        if record.levelno >= logging.ERROR:
            level = colored(level, "red", attrs=["bold"], force_color=True)
        elif record.levelno >= logging.WARNING:
            level = colored(level, "yellow", force_color=True)
        prefix = colored(f"[{record.asctime} {record.name}", "green", force_color=True)
        return f"{prefix} {level}] {record.getMessage()}"


def use_color(stream=None) -> bool:
    """Colour on a terminal when termcolor is installed, unless NO_COLOR is set."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    try:
        import termcolor  # noqa: F401
    except ImportError:
        return False
    return True


def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, color: Optional[bool] = None,
                 name: str = "dino", abbrev_name: Optional[str] = None) -> logging.Logger:
    """The run's logger (see module doc). `color`: coloured console lines (termcolor); None: on a
    terminal only. The file never gets colour codes."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    remove_handlers(logger)

    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    console = logging.StreamHandler(stream=sys.stdout)
    console.setLevel(logging.INFO if distributed_rank == 0 else logging.WARNING)
    colored = use_color(sys.stdout) if color is None else bool(color)
    console.setFormatter(ColorfulFormatter(_FORMAT, datefmt=_DATEFMT) if colored else formatter)
    setattr(console, _MARK, True)
    logger.addHandler(console)

    if output:
        path = output if distributed_rank == 0 else f"{output}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        setattr(file_handler, _MARK, True)
        logger.addHandler(file_handler)
    return logger


def route_library_logs(logger: logging.Logger, names=("datasets",)) -> None:
    """Send the records of other module loggers (e.g. `datasets.coco`) through `logger`'s
    handlers too, so they reach stdout and info.txt. Loggers named `<logger>.x` (e.g.
    `dino.backbone`) reach them anyway. Propagation to the root logger is left as it is."""
    for lib in names:
        lib_logger = logging.getLogger(lib)
        remove_handlers(lib_logger)
        if lib_logger.level == logging.NOTSET or lib_logger.level > logging.INFO:
            lib_logger.setLevel(logging.INFO)
        for handler in logger.handlers:
            lib_logger.addHandler(handler)


def remove_handlers(*loggers: logging.Logger) -> None:
    """Detach (and close) the handlers `setup_logger` installed on these loggers."""
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(handler, _MARK, False):
                logger.removeHandler(handler)
                handler.close()
