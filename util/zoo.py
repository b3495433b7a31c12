"""The model zoo by name: released checkpoints, their configs and where their files come from.

The registry is data, `config/model_zoo.json` (beside the configs its entries name), plus the
entries of the file `$DINO_MODEL_ZOO` names when set (a team's own models; a name may not be
given twice). Each entry: name, kind ('detector' or 'backbone'), config, file, urls, box AP,
class names, size and sha256 where known (docs/MODEL_ZOO.md lists them).

A name is used wherever a checkpoint path is (`--resume`, `--pretrain_model_path`,
`Detector.from_pretrained`, `tools/inference.py --model`, ...): `fetch(entry)` gives the local
file, looked for first in the weights folder (`--weights_dir` or `$DINO_WEIGHTS_DIR`, which
`tools/fetch_weights.py --dir` fills for machines without network) and otherwise downloaded
once through util/downloads.py into the ecosystem's caches. An existing path always wins
over a name.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from util.downloads import DownloadError, hub_cached, seen_sha256, sha256_of, source_kind, url_cache_path
from util.slconfig import ConfigError

logger = logging.getLogger("dino.zoo")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT_IN = os.path.join(REPO, "config", "model_zoo.json")
EXTRA_REGISTRY_ENV = "DINO_MODEL_ZOO"
WEIGHTS_DIR_ENV = "DINO_WEIGHTS_DIR"
SUMS_FILE = "SHA256SUMS"  # `sha256sum -c` format, written by tools/fetch_weights.py --dir
_FIELDS = ("name", "kind", "title", "source", "backbone", "pretrain", "epochs", "dn_queries", "box_ap", "ap_of",
           "classes", "config", "options", "file", "urls", "size", "sha256", "use", "how_to_get", "notes")


class ZooError(ConfigError):
    """An unknown name, a model without a config here, or a broken registry; one line (a ConfigError,
    so every command line reports it as the settings' problem it is)."""


@dataclass(frozen=True)
class ZooEntry:
    """One released file (see config/model_zoo.json's 'about')."""
    name: str
    kind: str = "detector"
    title: str = ""
    source: str = ""
    backbone: str = ""
    pretrain: Optional[str] = None
    epochs: Optional[int] = None
    dn_queries: Optional[int] = None
    box_ap: Optional[float] = None
    ap_of: Optional[str] = None  # what the AP was measured with, when not this DINO
    classes: Optional[str] = None  # 'coco'
    config: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)  # config keys set on top of the config
    file: Optional[str] = None
    urls: Tuple[str, ...] = ()
    size: Optional[int] = None
    sha256: Optional[str] = None
    use: Optional[str] = None  # how a backbone file is given to a run
    how_to_get: Optional[str] = None
    notes: Optional[str] = None
    registry: str = BUILT_IN

    @property
    def config_path(self) -> Optional[str]:
        """The config as an absolute path (relative ones are relative to the repository)."""
        if not self.config:
            return None
        return self.config if os.path.isabs(self.config) else os.path.join(REPO, self.config)


# --------------------------------------------------------------------------- #
# the registry
# --------------------------------------------------------------------------- #
_cache: Dict[Tuple[str, ...], Dict[str, ZooEntry]] = {}


def registry_files() -> List[str]:
    extra = os.environ.get(EXTRA_REGISTRY_ENV)
    return [BUILT_IN] + ([os.path.expanduser(extra)] if extra else [])


def registry() -> Dict[str, ZooEntry]:
    """{name: entry} of every registry file (read once per set of files and their mtimes)."""
    files = registry_files()
    key = tuple(f"{f}@{os.path.getmtime(f) if os.path.isfile(f) else -1}" for f in files)
    if key not in _cache:
        entries: Dict[str, ZooEntry] = {}
        for path in files:
            for entry in _read_registry(path):
                if entry.name in entries:
                    raise ZooError(f"model zoo {path}: the name {entry.name} is also in {entries[entry.name].registry}; "
                                   f"give it another name")
                entries[entry.name] = entry
        _cache.clear()
        _cache[key] = entries
    return _cache[key]


def _read_registry(path: str) -> List[ZooEntry]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ZooError(f"model zoo {path} cannot be read ({exc.strerror or exc}); check ${EXTRA_REGISTRY_ENV}") \
            from None
    except ValueError as exc:
        raise ZooError(f"model zoo {path} is not valid JSON ({exc})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ZooError(f"model zoo {path}: expected {{\"models\": [...]}} (see {BUILT_IN})")
    return [_entry(item, path, i) for i, item in enumerate(models)]


def _entry(item: Any, path: str, index: int) -> ZooEntry:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise ZooError(f"model zoo {path}: entry {index} has no name")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ZooError(f"model zoo {path}: entry {item['name']} has unknown key(s) {', '.join(unknown)} "
                       f"(known: {', '.join(_FIELDS)})")
    if item.get("kind", "detector") not in ("detector", "backbone"):
        raise ZooError(f"model zoo {path}: entry {item['name']}: kind must be 'detector' or 'backbone'")
    values = {k: v for k, v in item.items() if v is not None}
    values["urls"] = tuple(values.get("urls") or ())
    values["options"] = dict(values.get("options") or {})
    return ZooEntry(registry=path, **values)


def available_models(kind: Optional[str] = None) -> List[str]:
    """The names, in registry order (`kind`: 'detector' or 'backbone' to keep one kind)."""
    return [name for name, e in registry().items() if kind is None or e.kind == kind]


def get_entry(name: str) -> ZooEntry:
    """The entry of `name`; ZooError with the closest names otherwise."""
    entries = registry()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ZooError(f"{name} is not a released model known here; {hint}`python tools/fetch_weights.py --list` "
                   f"lists them")


def zoo_model(text: Any) -> Optional[ZooEntry]:
    """The entry when `text` is a model name and not an existing path (a path always wins)."""
    if not isinstance(text, str) or not text or os.sep in text or os.path.exists(text):
        return None
    return registry().get(text)


def close_names(text: str) -> List[str]:
    """Names that look like `text` (for 'file not found' messages)."""
    if not isinstance(text, str) or os.sep in text:
        return []
    return difflib.get_close_matches(text, list(registry()), n=2, cutoff=0.8)


def entry_for_url(url: str) -> Optional[ZooEntry]:
    """The registry entry that lists `url`, if any."""
    for entry in registry().values():
        if url in entry.urls:
            return entry
    return None


def settings_for_names(*candidates: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """(config, its preset options) of the first model name among `candidates` (main.py run without -c)."""
    for text in candidates:
        entry = zoo_model(text)
        if entry is not None:
            if not entry.config_path:
                raise ConfigError(f"{entry.name}: no config in this project for it yet; pass one with -c")
            return entry.config_path, dict(entry.options)
    raise ConfigError("-c CONFIG is needed (or --resume / --pretrain_model_path with the name of a released model, "
                      "whose config is then used: `python tools/fetch_weights.py --list`)")


def detector_config(entry: ZooEntry) -> str:
    """The config a detector entry runs with; ZooError for a backbone or a model without one."""
    if entry.kind != "detector":
        use = f" ({entry.use})" if entry.use else ""
        raise ZooError(f"{entry.name} is a backbone file, not a detector: a training run starts from it{use}")
    if not entry.config_path:
        raise ZooError(f"{entry.name}: no config in this project for it yet ({entry.notes or 'see docs/MODEL_ZOO.md'})"
                       f"; pass one (config=... in Python, -c on the command line)")
    return entry.config_path


# --------------------------------------------------------------------------- #
# the weights folder and local copies
# --------------------------------------------------------------------------- #
def weights_dir() -> Optional[str]:
    """The folder looked in before any download ($DINO_WEIGHTS_DIR, which --weights_dir sets)."""
    value = os.environ.get(WEIGHTS_DIR_ENV)
    return os.path.expanduser(value) if value else None


def use_weights_dir(path: Optional[str]) -> None:
    """--weights_dir: look in `path` first, in this process and the ones it starts."""
    if not path:
        return
    if not os.path.isdir(path):
        raise ConfigError(f"--weights_dir {path}: no such folder (tools/fetch_weights.py NAME --dir {path} fills one)")
    os.environ[WEIGHTS_DIR_ENV] = os.path.abspath(path)


def local_names(entry: ZooEntry) -> List[str]:
    """The file names the entry may have in a weights folder: its own, else NAME.pth / .pt / .safetensors."""
    names = [entry.file] if entry.file else []
    return names + [f"{entry.name}{ext}" for ext in (".pth", ".pt", ".safetensors") if f"{entry.name}{ext}" not in names]


def in_weights_dir(entry: ZooEntry) -> Optional[str]:
    """The entry's file in the weights folder (checked against a known sha256), or None."""
    folder = weights_dir()
    if not folder:
        return None
    for name in local_names(entry):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            _check_local(entry, path)
            return path
    return None


def _check_local(entry: ZooEntry, path: str) -> None:
    expected = entry.sha256 or _listed_sha256(path)
    if not expected:
        return
    found = sha256_of(path)
    if found != expected.lower():
        raise DownloadError(f"{path}: sha256 {found} is not the {expected.lower()} of {entry.name} "
                            f"({'the registry' if entry.sha256 else SUMS_FILE}); the copy is damaged or another "
                            f"file: fetch it again (tools/fetch_weights.py {entry.name} --dir DIR --overwrite)")


def _listed_sha256(path: str) -> Optional[str]:
    """The digest `SHA256SUMS` beside `path` lists for it, if any."""
    sums = os.path.join(os.path.dirname(path), SUMS_FILE)
    try:
        with open(sums, encoding="utf-8") as f:
            for line in f:
                digest, _, name = line.strip().partition("  ")
                if name.lstrip("*") == os.path.basename(path):
                    return digest
    except OSError:
        return None
    return None


def cached_copy(entry: ZooEntry) -> Optional[str]:
    """The entry's file in a download cache (no network), or None."""
    for url in entry.urls:
        kind = source_kind(url)
        if kind == "hub":
            path = hub_cached(url)
        else:
            path = url_cache_path(f"{url}#{entry.file}" if kind == "drive" else url, entry.file)
        if path and os.path.isfile(path):
            return path
    return None


def manual_hint(entry: ZooEntry, url: Optional[str] = None) -> str:
    """One clause: how to get the file by hand and where to put it."""
    name = entry.file or f"{entry.name}.pth"
    where = url or "its authors' page (docs/MODEL_ZOO.md)"
    if entry.how_to_get:
        where = entry.how_to_get if not url or url in entry.how_to_get else f"{url} (or {entry.how_to_get})"
    folder = weights_dir()
    put = f"put it in {folder}" if folder else f"put it in a folder DIR and pass --weights_dir DIR (or set {WEIGHTS_DIR_ENV}=DIR)"
    return f"to use it without a download, get {name} from {where} and {put}"


def fetch(entry: ZooEntry) -> str:
    """The entry's local file: the weights folder, else the cache, else a download (each URL in turn)."""
    local = in_weights_dir(entry)
    if local:
        logger.info("%s: %s (weights folder)", entry.name, local)
        return local
    if not entry.urls:
        raise DownloadError(f"{entry.name}: no download link is known here; {manual_hint(entry)}")
    errors: List[DownloadError] = []
    for url in entry.urls:
        try:
            path = _download(entry, url)
            logger.info("%s: %s", entry.name, path)
            return path
        except DownloadError as exc:
            errors.append(exc)
    more = f" (and {len(errors) - 1} other source(s) failed)" if len(errors) > 1 else ""
    raise DownloadError(f"{entry.name}: {errors[0]}{more}")


def _download(entry: ZooEntry, url: str) -> str:
    from util.downloads import fetch as download

    return download(url, file_name=entry.file, sha256=entry.sha256, manual=manual_hint(entry, url))


def fetch_url(url: str) -> str:
    """A URL given instead of a file: its registry entry's file when it has one (weights folder,
    known sha256), else a plain download."""
    entry = entry_for_url(url)
    if entry is not None:
        local = in_weights_dir(entry)
        return local or _download(entry, url)
    from util.downloads import fetch as download
    return download(url)


# --------------------------------------------------------------------------- #
# listing
# --------------------------------------------------------------------------- #
def describe(entry: ZooEntry) -> Dict[str, Any]:
    """What --list shows of an entry: where its file is here (if anywhere) and its size."""
    local = None
    try:
        local = in_weights_dir(entry)
    except DownloadError:
        local = None
    where = "weights folder" if local else ""
    if not local:
        local = cached_copy(entry)
        where = "cached" if local else ""
    size = entry.size if entry.size is not None else (os.path.getsize(local) if local else None)
    return {"name": entry.name, "kind": entry.kind, "backbone": entry.backbone, "pretrain": entry.pretrain,
            "epochs": entry.epochs, "box_ap": entry.box_ap, "ap_of": entry.ap_of, "size": size, "here": where,
            "config": entry.config, "urls": list(entry.urls), "file": entry.file, "path": local,
            "sha256": entry.sha256 or (seen_sha256(entry.urls[0]) if entry.urls else None)}


def human_size(size: Optional[int]) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def listing(names: Optional[Sequence[str]] = None) -> str:
    """A table of the models: name, kind, backbone, box AP, size ('?' when not known), where."""
    rows = [describe(registry()[n]) for n in (names or available_models())]
    header = ("name", "kind", "backbone", "box AP", "size", "here")
    lines = [[r["name"], r["kind"], r["backbone"] + (f" ({r['pretrain']})" if r["pretrain"] else ""),
              "-" if r["box_ap"] is None else f"{r['box_ap']:.1f}" + ("*" if r["ap_of"] else ""),
              human_size(r["size"]), r["here"] or ("-" if r["urls"] else "no link")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header] + lines]
    if any(r["ap_of"] for r in rows):
        out.append("* box AP of another detector trained from this file (e.g. Mask R-CNN), not of DINO")
    out.append("size '?': not known until downloaded; here: 'cached' (downloaded before), 'weights folder' "
               f"(${WEIGHTS_DIR_ENV}), 'no link' (get it by hand: tools/fetch_weights.py NAME says how)")
    return "\n".join(out)
