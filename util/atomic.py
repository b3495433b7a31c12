"""Writing outputs so that nothing a person has is lost (no torch here: the ONNX-only inference
path uses it too).

Every tool writes its files the same way:

    out = check_output_file(opts.output, inputs=[opts.input], overwrite=opts.overwrite)  # before any work
    with atomic_output(out) as tmp:      # a hidden temporary name beside the target
        image.save(tmp, format="PNG")    # written, fsynced, then renamed onto it

* `check_output_file` / `prepare_output_dir` run before a model is loaded: the
  output is not an input (compared as files, so a symlinked folder or a hard
  link is caught), an existing output is replaced only with `overwrite`, its
  folder exists or is created, is a folder, and can be written to.
* `atomic_output` leaves the target either as it was or complete; an error
  inside the block removes the temporary file.
* A write that fails (full disk, permissions) becomes an `OutputError` naming
  the output and the reason (`write_error`), never blamed on an input.
* Temporary files of a run that was killed (`.NAME.tmp-PID...`) are removed
  by the next run that writes into that folder (`remove_stale_tmp_files`),
  unless the process that owns them is still running.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from typing import Iterable, Iterator, List, Optional

TMP_MARK = ".tmp-"
_TMP_NAME = re.compile(r"^\..+\.tmp-(\d+)(\.[A-Za-z0-9]+)?$")


class OutputError(RuntimeError):
    """An output that cannot be written where asked; the message names it and says what to do."""


def tmp_path_for(path: str, keep_extension: bool = True) -> str:
    """The hidden temporary name beside `path` that this process writes before renaming:
    `.NAME.tmp-PID.ext` (the extension kept, so format-sniffing writers work) or `.NAME.ext.tmp-PID`."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if keep_extension and ext:
        return os.path.join(folder, f".{stem}{TMP_MARK}{os.getpid()}{ext}")
    return os.path.join(folder, f".{name}{TMP_MARK}{os.getpid()}")


def fsync_dir(folder: str) -> None:
    """Make a rename inside `folder` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(path: str, exc: BaseException) -> OutputError:
    """One line for a failed write of `path`: which output, and why (full disk, permissions, ...)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = os.strerror(exc.errno)
        if exc.errno == errno.ENOSPC:
            reason += "; free some space or write elsewhere"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason += "; write to a folder you can write to"
    else:
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
    return OutputError(f"could not write {path}: {reason}")


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`.
    An OSError while writing becomes an OutputError naming `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = tmp_path_for(path)
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own: it may be writing it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_tmp_files(folder: str) -> List[str]:
    """Delete the temporary files (and folders) that killed runs left in `folder`; return their names."""
    removed: List[str] = []
    if not folder or not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        match = _TMP_NAME.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(name)
        except OSError:
            pass
    return removed


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_folder(folder: str, flag: str, shown: str) -> None:
    """`folder` exists (created if missing), is a folder, and this process may write in it."""
    probe = folder
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if probe and os.path.exists(probe) and not os.path.isdir(probe):
        raise OutputError(f"{flag} {shown}: {probe} is a file, not a folder; choose another path")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot create folder {folder} ({os.strerror(exc.errno or 0)}); "
                          f"choose a folder you can write to") from None
    probe = os.path.join(folder, f".write-probe{TMP_MARK}{os.getpid()}")
    try:  # a real write: permissions, read-only mounts and root's exemptions all answer truthfully
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot write in folder {folder} ({os.strerror(exc.errno or 0)}); "
                          f"choose a folder you can write to") from None


def check_output_file(path: str, inputs: Iterable[Optional[str]] = (), overwrite: bool = False,
                      flag: str = "output", companions: Iterable[str] = ()) -> str:
    """The absolute path to write `path` to, after refusing an input, a folder and (without
    `overwrite`) an existing file; its folder is created when missing. `companions` are files
    written beside it (e.g. ONNX's MODEL.onnx.data), checked the same way. Stale temporary files
    of killed runs in that folder are removed. Raises OutputError."""
    out = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(out):
        raise OutputError(f"{flag} {path} is a folder; give a file name inside it")
    written = [out] + [os.path.abspath(c) for c in companions]
    for target in written:
        for source in inputs:
            if source and os.path.exists(source) and os.path.exists(target) and _same_file(source, target):
                raise OutputError(f"{flag} {path} is the input {source} (the same file); choose another name, "
                                  f"inputs are never written over")
    existing = [t for t in written if os.path.exists(t)]
    if existing and not overwrite:
        raise OutputError(f"{flag} {path}: {existing[0]} exists; pass --overwrite to replace it, or choose "
                          f"another name")
    _check_folder(os.path.dirname(out), flag, str(path))
    remove_stale_tmp_files(os.path.dirname(out))
    return out


def prepare_output_dir(path: str, flag: str = "--output_dir") -> str:
    """Create `path` if needed after checking it can be a folder this process writes in; stale
    temporary files of killed runs in it are removed. Returns the absolute path. Raises OutputError."""
    out = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{flag} {path} is a file, not a folder; choose a folder for the results")
    _check_folder(out, flag, str(path))
    remove_stale_tmp_files(out)
    return out
