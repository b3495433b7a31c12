#!/usr/bin/env python
"""Download released models by name: into the caches, or into a folder for machines without network.

    python tools/fetch_weights.py --list
    python tools/fetch_weights.py dino_r50_4scale_12ep
    python tools/fetch_weights.py dino_r50_4scale_12ep dino_swin_large_384_4scale_36ep --dir weights
    python tools/fetch_weights.py --all --dir weights

The names are those of config/model_zoo.json (and of $DINO_MODEL_ZOO): --list prints them
with backbone, box AP, size and whether the file is here already. Without --dir each file is
downloaded once into the ecosystem's cache (torch.hub's, $TORCH_HOME; the Hugging Face Hub's,
$HF_HOME) where every tool finds it by name. With --dir DIR each file is also placed in DIR
under its own name (a hard link to the cached copy when both are on one disk, else a copy;
atomically) and its sha256 written to DIR/SHA256SUMS. Copy DIR to the machine without network
and give it to any tool there: `--weights_dir DIR` or DINO_WEIGHTS_DIR=DIR; names are looked
for in DIR first and checked against SHA256SUMS.

A file DIR holds already is kept (so rerunning --all fills in what is missing) unless
--overwrite. --all takes every model with a download link; the others are listed with how to
get them by hand. Downloads show their progress; a failed one is reported in one line naming the
URL and where to put a copy fetched by hand, and the others go on (exit status 1 when any
failed, 2 for a wrong command line or an unwritable --dir). --debug shows tracebacks.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


class ToolError(Exception):
    """A problem with the command line or the output folder; printed as one line."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="released models (see --list)")
    p.add_argument("--all", action="store_true", help="every model that has a download link")
    p.add_argument("--list", action="store_true", help="print the models: backbone, box AP, size, where")
    p.add_argument("--dir", metavar="DIR", help="also place the files in DIR (with DIR/SHA256SUMS)")
    p.add_argument("--overwrite", action="store_true", help="replace files DIR holds already")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def select(opts: argparse.Namespace) -> list:
    """The entries to fetch: the names given (all checked first), or every one with a link (--all)."""
    from util.zoo import get_entry, registry

    if opts.all and opts.names:
        raise ToolError("give NAME... or --all, not both")
    if not opts.all and not opts.names:
        raise ToolError("give the names of the models to fetch (see --list), or --all")
    if opts.all:
        return [e for e in registry().values() if e.urls]
    return [get_entry(name) for name in dict.fromkeys(opts.names)]


def place(source: str, target: str) -> None:
    """Put `source` at `target` atomically: a hard link when possible, else a copy."""
    from util.atomic import atomic_output, tmp_path_for, write_error

    tmp = tmp_path_for(target)
    try:
        os.link(source, tmp)
        os.replace(tmp, target)
        return
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:
        with atomic_output(target) as tmp_copy:
            shutil.copyfile(source, tmp_copy)
    except OSError as exc:
        raise write_error(target, exc) from exc


def record_sum(folder: str, file_name: str, digest: str) -> None:
    """Set `file_name`'s line in folder/SHA256SUMS (`sha256sum -c` reads it)."""
    from util.atomic import atomic_write_text
    from util.zoo import SUMS_FILE

    path = os.path.join(folder, SUMS_FILE)
    lines = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                digest_, _, name = line.rstrip("\n").partition("  ")
                if name:
                    lines[name] = digest_
    lines[file_name] = digest
    atomic_write_text(path, "".join(f"{d}  {n}\n" for n, d in sorted(lines.items())))


def fetch_one(entry, folder: Optional[str], overwrite: bool) -> str:
    """Fetch one entry (into `folder` too when given); returns what happened, for the summary line."""
    from util.downloads import sha256_of
    from util.zoo import fetch

    target = os.path.join(folder, entry.file or f"{entry.name}.pth") if folder else None
    if target and os.path.isfile(target) and not overwrite:
        return f"kept {target} (there already; --overwrite fetches it again)"
    path = fetch(entry)
    if not target:
        return f"{path}"
    if os.path.abspath(path) != os.path.abspath(target):
        place(path, target)
    record_sum(folder, os.path.basename(target), sha256_of(target))
    return f"{target}"


def run(opts: argparse.Namespace) -> int:
    from util.downloads import DownloadError
    from util.zoo import listing, manual_hint

    if opts.list:
        print(listing())
        return 0
    entries = select(opts)
    if opts.dir:
        from util.atomic import prepare_output_dir
        prepare_output_dir(opts.dir, flag="--dir")  # before any download (leftovers of a killed run removed)
    failed: List[str] = []
    for i, entry in enumerate(entries, 1):
        print(f"[{i}/{len(entries)}] {entry.name}", flush=True)
        try:
            print(f"  {fetch_one(entry, opts.dir, opts.overwrite)}", flush=True)
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            failed.append(entry.name)
    if opts.all:
        from util.zoo import registry
        for entry in (e for e in registry().values() if not e.urls):
            print(f"not fetched (no download link): {entry.name}: {manual_hint(entry)}")
    done = len(entries) - len(failed)
    print(f"{done} of {len(entries)} fetched" + (f"; failed: {' '.join(failed)}" if failed else "")
          + (f"; folder {os.path.abspath(opts.dir)}" if opts.dir else ""))
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    try:
        return run(opts)
    except KeyboardInterrupt:
        print("error: interrupted (a partial download is never used; run again to go on)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for people, the traceback with --debug
        if opts.debug:
            raise
        from util.atomic import OutputError
        from util.cli import first_line, unexpected_error_line
        from util.slconfig import ConfigError
        if isinstance(exc, (ToolError, ConfigError, OutputError)):
            print(f"error: {first_line(exc)}", file=sys.stderr)
            return 2
        print(unexpected_error_line(exc, opts.dir or "the model zoo"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
