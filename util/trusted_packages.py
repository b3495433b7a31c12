"""AOTInductor packages this user exported, by content hash, so that running one needs no flag.

A `.pt2` package is a compiled program (a shared library): loading it runs its code. The tools
never run code from a file they read unless told so; a package that tools/export_onnx.py wrote
on this machine is the user's own program, so the exporter records its SHA-256 here and
tools/inference.py --aoti loads such a package without `--trust_checkpoint`. Any other package
(downloaded, copied from elsewhere, or changed since) needs the flag.

The record is a JSON list of hashes in `$DINO_TRUST_FILE`, default
`~/.cache/dino/trusted_packages.json` (under `$XDG_CACHE_HOME` when set).
"""
from __future__ import annotations

import json
import os
from typing import List

ENV_VAR = "DINO_TRUST_FILE"


def trust_file() -> str:
    if os.environ.get(ENV_VAR):
        return os.path.expanduser(os.environ[ENV_VAR])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "dino", "trusted_packages.json")


def file_sha256(path: str) -> str:
    from util.downloads import sha256_of
    return sha256_of(path)


def _recorded() -> List[str]:
    try:
        with open(trust_file()) as f:
            hashes = json.load(f)
        return [h for h in hashes if isinstance(h, str)] if isinstance(hashes, list) else []
    except (OSError, ValueError):
        return []


def remember(path: str) -> bool:
    """Record `path`'s hash as exported here; False (with nothing raised) when the record cannot be written."""
    from util.atomic import atomic_write_text

    hashes = _recorded()
    digest = file_sha256(path)
    if digest in hashes:
        return True
    try:
        atomic_write_text(trust_file(), json.dumps(hashes + [digest]))
        return True
    except Exception:  # noqa: BLE001 - a read-only home: the package is fine, it just needs the flag later
        return False


def is_trusted(path: str) -> bool:
    """True when `path` has the content of a package exported on this machine."""
    return file_sha256(path) in _recorded()
