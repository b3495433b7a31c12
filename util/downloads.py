"""Downloading weight files through the ecosystem's own downloaders and caches.

`fetch(url, ...)` returns the path of a complete local copy of `url`, downloading it once:

* Hugging Face Hub files (`https://huggingface.co/REPO/resolve/REV/FILE`) go through
  `huggingface_hub.hf_hub_download`: its cache (`HF_HOME` / `HF_HUB_CACHE`), its mirror switch
  (`HF_ENDPOINT`), its offline mode (`HF_HUB_OFFLINE=1`), its size check and its resuming of
  an interrupted download.
* Google Drive folders (the original DINO's zoo) go through `gdown`: the folder is listed, the
  file of the asked name downloaded into torch.hub's cache.
* Any other URL goes through torch.hub's downloader (`torch.hub.download_url_to_file`) into
  `$TORCH_HOME/hub/checkpoints/url-HASH/NAME`, one folder per URL, so two URLs whose files
  share a name never stand for each other.

Every download lands under a temporary name and is renamed into place only after it passed
the checks: complete (a zip archive, which every PyTorch checkpoint of the zoo is, must have
its directory; a .safetensors file must hold every byte its header announces), the sha256 the
caller knows, and, where none is known, the sha256 seen the first time this URL was
downloaded here (recorded in `$TORCH_HOME/hub/checkpoints/sha256-seen/`). A lock per URL lets
one process download while others wait; leftovers of a killed download are removed by the next
one. `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) stops every download, not only the Hub's.
Problems raise `DownloadError` with one line naming the URL, what happened and `manual`, the
caller's advice on where to put a copy fetched by hand.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import zipfile
from typing import Optional, Tuple
from urllib.parse import urlparse

logger = logging.getLogger("dino.download")

HUB_HOSTS = ("huggingface.co", "hf.co")
DRIVE_FOLDER = re.compile(r"^https://drive\.google\.com/drive/(?:u/\d+/)?folders/([\w-]+)")
HUB_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


class DownloadError(RuntimeError):
    """A file that could not be downloaded or failed its checks; one line saying what to do."""


def offline() -> bool:
    """Whether downloads are switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now)."""
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def source_kind(url: str) -> str:
    """'hub', 'drive' (a Google Drive folder) or 'url'."""
    parsed = urlparse(url)
    if parsed.hostname in HUB_HOSTS and HUB_PATH.match(parsed.path):
        return "hub"
    if DRIVE_FOLDER.match(url):
        return "drive"
    return "url"


def fetch(url: str, file_name: Optional[str] = None, sha256: Optional[str] = None, manual: str = "") -> str:
    """A complete local copy of `url` (see the module doc). `file_name`: the file's name on
    disk (and, for a Drive folder, in the folder); `sha256`: the digest it must have."""
    manual = manual or "or download it yourself and pass its local path"
    kind = source_kind(url)
    if kind == "hub":
        return _fetch_hub(url, sha256, manual)
    if kind == "drive":
        return _fetch_drive(url, file_name, sha256, manual)
    return _fetch_release(url, file_name, sha256, manual)


# --------------------------------------------------------------------------- #
# checks and records
# --------------------------------------------------------------------------- #
def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def incomplete_reason(path: str) -> Optional[str]:
    """Why the file is certainly incomplete, or None (formats without an end marker pass)."""
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":  # PyTorch's zip format (and .npz): the directory sits at the end
        try:
            with zipfile.ZipFile(path):
                return None
        except (zipfile.BadZipFile, OSError) as exc:
            return f"a zip archive without its end ({exc}) after {size} bytes"
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: header length, JSON header, data
        (header_len,) = struct.unpack("<Q", head[:8])
        try:
            with open(path, "rb") as f:
                f.seek(8)
                header = json.loads(f.read(header_len))
            end = max([v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"] or [0])
        except (ValueError, KeyError, TypeError, IndexError):
            return f"a safetensors file with a cut header ({size} bytes)"
        if 8 + header_len + end > size:
            return f"{size} of the {8 + header_len + end} bytes its header announces"
    return None


def seen_record_path(url: str) -> str:
    """Where the sha256 first seen for `url` is kept."""
    import torch
    return os.path.join(torch.hub.get_dir(), "checkpoints", "sha256-seen", _url_hash(url) + ".json")


def seen_sha256(url: str) -> Optional[str]:
    """The sha256 recorded the first time `url` was downloaded here, if any."""
    try:
        with open(seen_record_path(url), encoding="utf-8") as f:
            return str(json.load(f)["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_sha256(url: str, digest: str, path: str) -> None:
    from util.atomic import atomic_write_text

    record = seen_record_path(url)
    try:
        os.makedirs(os.path.dirname(record), exist_ok=True)
        atomic_write_text(record, json.dumps({"url": url, "sha256": digest, "file": os.path.basename(path),
                                              "size": os.path.getsize(path)}) + "\n")
    except OSError as exc:  # a read-only cache: the download itself is fine
        logger.warning("could not record the sha256 of %s in %s (%s)", url, record, exc)


def verify(path: str, url: str, sha256: Optional[str], manual: str) -> str:
    """Check a fresh download (complete, expected sha256, the one seen before); record its
    sha256 when none was known. Returns the digest; DownloadError otherwise."""
    reason = incomplete_reason(path)
    if reason:
        raise DownloadError(f"{url}: the download is incomplete ({reason}); nothing was kept: run again to "
                            f"restart it, {manual}")
    digest = sha256_of(path)
    if sha256 and digest != sha256.lower():
        raise DownloadError(f"{url}: wrong sha256 {digest}, expected {sha256.lower()}; nothing was kept: the file "
                            f"was damaged or replaced upstream; {manual}")
    seen = seen_sha256(url)
    if seen and seen != digest and not sha256:
        raise DownloadError(f"{url}: sha256 {digest} differs from {seen} seen at its first download here "
                            f"({seen_record_path(url)}); nothing was kept: if the change upstream is expected, "
                            f"delete that record and run again")
    if not seen:
        _record_sha256(url, digest, path)
        logger.info("%s: sha256 %s (recorded in %s)", url, digest, seen_record_path(url))
    return digest


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


def _root_reason(exc: BaseException) -> str:
    """The first line of the exception that started it all (huggingface_hub wraps e.g. a refused
    connection in a 'cannot find the requested files' error)."""
    seen = [exc]
    while (seen[-1].__cause__ or seen[-1].__context__) is not None and len(seen) < 8:
        seen.append(seen[-1].__cause__ or seen[-1].__context__)
    return _reason(seen[-1])


# --------------------------------------------------------------------------- #
# release URLs: torch.hub's downloader and cache
# --------------------------------------------------------------------------- #
def url_cache_path(url: str, file_name: Optional[str] = None) -> str:
    """torch.hub's checkpoints folder, a subfolder per URL (by its hash), the file's own name."""
    import torch
    name = file_name or os.path.basename(urlparse(url).path) or "download"
    return os.path.join(torch.hub.get_dir(), "checkpoints", f"url-{_url_hash(url)}", name)


def _offline_error(url: str, where: str, manual: str) -> DownloadError:
    return DownloadError(f"{url}: not downloaded: offline (HF_HUB_OFFLINE=1) and not in the cache ({where}); "
                         f"{manual}")


def _remove_leftovers(folder: str) -> None:
    """Partial downloads of killed processes (only called with the folder's lock held)."""
    for name in os.listdir(folder):
        if name.endswith(".partial") or ".tmp-" in name:
            try:
                os.remove(os.path.join(folder, name))
                logger.info("removed %s, left by an interrupted download", os.path.join(folder, name))
            except OSError:
                pass


def _fetch_release(url: str, file_name: Optional[str], sha256: Optional[str], manual: str) -> str:
    import torch
    from filelock import FileLock

    from util.atomic import tmp_path_for

    final = url_cache_path(url, file_name)
    if os.path.isfile(final):
        logger.info("%s: the copy downloaded before (%s)", url, final)
        return final
    if offline():
        raise _offline_error(url, final, manual)
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    with FileLock(os.path.join(folder, ".lock")):
        if os.path.isfile(final):  # another process finished it while this one waited
            return final
        _remove_leftovers(folder)
        staging = tmp_path_for(final)
        try:
            logger.info("downloading %s to %s", url, final)
            torch.hub.download_url_to_file(url, staging, progress=True)
            verify(staging, url, sha256, manual)
            os.replace(staging, final)
        except DownloadError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HTTP status, disk: one line for a person
            raise DownloadError(f"{url}: download failed ({_reason(exc)}); {manual}") from None
        finally:
            if os.path.exists(staging):
                os.remove(staging)
    return final


# --------------------------------------------------------------------------- #
# Hugging Face Hub: huggingface_hub's downloader and cache
# --------------------------------------------------------------------------- #
def hub_location(url: str) -> Tuple[str, str, str]:
    """(repo id, revision, file name) of a Hub 'resolve' URL."""
    match = HUB_PATH.match(urlparse(url).path)
    if not match:
        raise DownloadError(f"{url}: not a Hugging Face Hub file URL (https://huggingface.co/REPO/resolve/REV/FILE)")
    return match["repo"], match["revision"], match["filename"]


def hub_cache_dir() -> Optional[str]:
    """The Hub cache as the environment names it now (None: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def hub_cached(url: str) -> Optional[str]:
    """The Hub cache's copy of `url`, if it has one (no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo, revision, filename = hub_location(url)
    found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir(), revision=revision)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _fetch_hub(url: str, sha256: Optional[str], manual: str) -> str:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cached = hub_cached(url)
    if cached:
        return cached
    repo, revision, filename = hub_location(url)
    parsed = urlparse(url)
    endpoint = (os.environ.get("HF_ENDPOINT") or f"{parsed.scheme}://{parsed.netloc}").rstrip("/")
    shown = f"{endpoint}/{repo}/resolve/{revision}/{filename}"
    where = hub_cache_dir() or constants.HF_HUB_CACHE
    try:
        path = hf_hub_download(repo, filename, revision=revision, cache_dir=hub_cache_dir(), endpoint=endpoint,
                               local_files_only=offline())
    except LocalEntryNotFoundError as exc:
        if offline():
            raise _offline_error(shown, where, manual) from None
        raise DownloadError(f"{shown}: download failed ({_root_reason(exc)}); {manual}") from None
    except Exception as exc:  # noqa: BLE001 - HTTP status, network, disk: one line for a person
        raise DownloadError(f"{shown}: download failed ({_reason(exc)}); {manual}") from None
    try:
        verify(path, url, sha256, manual)
    except DownloadError:
        _remove_hub_copy(path)
        raise
    return path


def _remove_hub_copy(path: str) -> None:
    """Take a file that failed its checks out of the Hub cache (its snapshot link and its blob)."""
    blob = os.path.realpath(path)
    for target in {path, blob}:
        try:
            os.remove(target)
        except OSError:
            pass


# --------------------------------------------------------------------------- #
# Google Drive folders: gdown, into torch.hub's cache
# --------------------------------------------------------------------------- #
def _fetch_drive(url: str, file_name: Optional[str], sha256: Optional[str], manual: str) -> str:
    if not file_name:
        raise DownloadError(f"{url}: the name of this file in the Google Drive folder is not known here; "
                            f"{manual}")
    final = url_cache_path(f"{url}#{file_name}", file_name)
    if os.path.isfile(final):
        return final
    if offline():
        raise _offline_error(url, final, manual)
    try:
        import gdown
    except ImportError:
        raise DownloadError(f"{url}: Google Drive downloads need the gdown package (pip install gdown); "
                            f"{manual}") from None
    from filelock import FileLock

    from util.atomic import tmp_path_for

    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    with FileLock(os.path.join(folder, ".lock")):
        if os.path.isfile(final):
            return final
        _remove_leftovers(folder)
        file_id = _drive_file_id(gdown, url, file_name, manual)
        staging = tmp_path_for(final)
        try:
            logger.info("downloading %s from %s to %s", file_name, url, final)
            gdown.download(id=file_id, output=staging, quiet=False)
            verify(staging, url + "#" + file_name, sha256, manual)
            os.replace(staging, final)
        except DownloadError:
            raise
        except Exception as exc:  # noqa: BLE001 - gdown's, requests' and the disk's errors
            raise DownloadError(f"{url}: download of {file_name} failed ({_reason(exc)}); {manual}") from None
        finally:
            if os.path.exists(staging):
                os.remove(staging)
    return final


def _drive_file_id(gdown, url: str, file_name: str, manual: str) -> str:
    """The id of `file_name` in the Drive folder `url` (gdown lists the folder)."""
    try:
        listing = gdown.download_folder(url=url, skip_download=True, quiet=True)
    except Exception as exc:  # noqa: BLE001 - gdown's and requests' errors
        raise DownloadError(f"{url}: could not list the Google Drive folder ({_reason(exc)}); {manual}") from None
    names = [os.path.basename(item.path) for item in listing or []]
    for item, name in zip(listing or [], names):
        if name == file_name:
            return item.id
    shown = ", ".join(sorted(names)[:12]) or "nothing gdown could list"
    raise DownloadError(f"{url}: the Google Drive folder has no {file_name} (it holds {shown}); {manual}")
