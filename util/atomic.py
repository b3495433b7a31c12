"""Writing an output file so that it is either absent or complete (no torch: the ONNX-only
inference path uses it too).

    with atomic_output("out/picture.png") as tmp:     # a temporary name beside the target
        image.save(tmp, format="PNG")                  # written, fsynced, then renamed onto it

An error inside the block removes the temporary file and leaves any earlier `path` as it was.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path` (same extension, so format-sniffing writers work);
    on success fsync it and rename it onto `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
