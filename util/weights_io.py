"""Weight files are data: reading one never runs code from it.

Every checkpoint and weights file this project reads (main.py `--resume` /
`--pretrain_model_path`, backbone files, `Detector`, the tools, URLs) goes
through `read_weights_file`:

* `.safetensors` (recognised by content, whatever the name): tensors and a
  text header; nothing executable can be in it. This project's metadata (the
  run's settings, class names) comes back beside the weights.
* PyTorch files (`torch.save`, zip or legacy format): `torch.load(weights_only=True)`
  with the small allow-list below, the few Python objects the released
  checkpoints we support hold besides tensors. Any other object in the file
  (a pickled class or function) is refused *before anything is unpickled*,
  with one line naming it and the file. `trust=True` (`--trust_checkpoint`,
  `trust_checkpoint=True`) is the only way past that, and it runs code from
  the file: for files you trust, to convert them once to safetensors.
* `http(s)://` URLs and the names of released models (util/zoo.py,
  config/model_zoo.json): downloaded once through util/downloads.py (torch.hub's
  downloader and cache, a folder per URL so two URLs whose files share a name
  never stand for each other; huggingface_hub for Hub files; gdown for Google
  Drive), checked (complete, sha256) before use; then read as a local file.

`write_safetensors` writes a state dict with JSON metadata, atomically, the format this
project recommends for sharing fine-tuned models.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import zipfile
from typing import Any, Dict, List, Mapping, Optional

import torch

logger = logging.getLogger("dino.checkpoint")

TRUST_FLAG = "--trust_checkpoint"
TRUST_HINT = (f"If you trust where the file comes from, pass {TRUST_FLAG} (trust_checkpoint=True in Python): "
              f"that runs code from the file; then keep a safe copy with "
              f"`python tools/convert_checkpoint.py FILE OUT.safetensors {TRUST_FLAG}`.")
SAFETENSORS_METADATA_KEY = "dino"  # our metadata (JSON) in a .safetensors header


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or used; the message says what to do."""


class UntrustedCheckpointError(CheckpointError):
    """A pickled file holds Python objects outside the allow-list; nothing of it was run."""


# --------------------------------------------------------------------------- #
# the allow-list
# --------------------------------------------------------------------------- #
def _numpy_globals() -> Dict[str, Any]:
    """numpy arrays, scalars and dtypes (detectron2 / mmcv files hold them), under the module
    names numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) write."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a requirement
        return {}
    core = getattr(np, "_core", None) or np.core
    found: Dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[f"{prefix}._reconstruct"] = core.multiarray._reconstruct
        found[f"{prefix}.scalar"] = core.multiarray.scalar
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else ():
        cls = getattr(dtypes, name)
        if isinstance(cls, type) and name.endswith("DType") and name not in ("ObjectDType", "VoidDType"):
            found[f"numpy.dtypes.{name}"] = cls
    return found


def allowed_globals() -> Dict[str, Any]:
    """{name in the pickle: object} beyond what torch's weights_only loader allows by default.

    argparse.Namespace: the `args` of the original DINO's checkpoints and of this project's.
    numpy arrays / scalars / dtypes: detectron2 (detrex) and mmcv (ViT-Adapter) checkpoints.
    Each is rebuilt from plain data only; none can call a function of the file's choosing.
    """
    allowed: Dict[str, Any] = {"argparse.Namespace": argparse.Namespace}
    allowed.update(_numpy_globals())
    return allowed


def _safe_globals_list() -> List[Any]:
    out = []
    for name, obj in allowed_globals().items():
        natural = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        out.append(obj if natural == name else (obj, name))
    return out


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def is_url(path: str) -> bool:
    return str(path).startswith(("http://", "https://"))


def download(url: str, what: str) -> str:
    """The local copy of `url` (downloaded once, checked before use; util/downloads.py)."""
    from util.downloads import DownloadError
    from util.zoo import ZooError, fetch_url

    try:
        return fetch_url(url)
    except (DownloadError, ZooError) as exc:
        raise CheckpointError(f"{what} {exc}") from None


def zoo_file(name: str, what: str) -> Optional[str]:
    """The local file of a released model given by name (util/zoo.py), or None when `name` is none."""
    from util.downloads import DownloadError
    from util.zoo import ZooError, fetch, zoo_model

    try:
        entry = zoo_model(name)
        return fetch(entry) if entry is not None else None
    except (DownloadError, ZooError) as exc:
        raise CheckpointError(f"{what} {exc}") from None


def file_kind(path: str) -> str:
    """'safetensors', 'torch-zip', 'torch-legacy' or 'unknown', from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
        return "torch-zip"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path):
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    return "unknown"


def _refuse(path: str, what: str, names: List[str]) -> UntrustedCheckpointError:
    listed = ", ".join(sorted(set(names))[:4])
    return UntrustedCheckpointError(
        f"{what} {path}: refused to load it: it holds the Python object {listed}, which only running code "
        f"from the file could build (nothing from it was run). {TRUST_HINT}")


_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # torch's words for a global it refused


def _load_pickled(path: str, what: str, trust: bool) -> Any:
    if trust:
        logger.warning("%s %s: loaded with %s: code in the file may have run", what, path, TRUST_FLAG)
        return torch.load(path, map_location="cpu", weights_only=False)
    allowed = allowed_globals()
    if file_kind(path) == "torch-zip":  # lists the file's globals without unpickling anything
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - a damaged file: torch.load below says so
            found = []
        refused = [name for name in found if name not in allowed]
        if refused:
            raise _refuse(path, what, refused)
    try:
        with torch.serialization.safe_globals(_safe_globals_list()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        refused = _UNSUPPORTED_GLOBAL.findall(str(exc))  # legacy files: the restricted unpickler stopped
        if refused:
            raise _refuse(path, what, refused) from None
        raise CheckpointError(
            f"{what} {path} is not a readable PyTorch checkpoint ({_first_line(exc)}). It may be truncated (a "
            f"copy or save that was interrupted) or another kind of file; use another checkpoint.") from None


def read_weights_file(path: str, what: str = "checkpoint", *, trust: bool = False) -> Any:
    """What the file (or URL) holds, read as data (see the module doc).

    A safetensors file comes back as {"model": state_dict, **its metadata}. Problems raise
    CheckpointError (UntrustedCheckpointError for objects outside the allow-list).
    """
    if not path:
        raise CheckpointError(f"{what}: no file given")
    path = os.path.expanduser(str(path))
    if is_url(path):
        return _read_local(download(path, what), what, trust, shown=path)
    local = None if os.path.exists(path) else zoo_file(path, what)
    if local:
        return _read_local(local, what, trust, shown=path)
    return _read_local(path, what, trust, shown=path)


def _read_local(path: str, what: str, trust: bool, shown: str) -> Any:
    if not os.path.exists(path):
        from util.zoo import close_names
        close = close_names(shown)
        named = f" or a released model's name (did you mean {' or '.join(close)}?)" if close else ""
        raise CheckpointError(f"{what} {shown}: file does not exist. Check the path (it is relative to "
                              f"{os.getcwd()}){named}.")
    if os.path.isdir(path):
        hint = os.path.join(path, "checkpoint.pth")
        extra = f" (e.g. {hint})" if os.path.exists(hint) else ""
        raise CheckpointError(f"{what} {shown} is a folder; give a checkpoint file{extra}.")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} {shown} is empty (0 bytes), probably from an interrupted copy or save; "
                              f"use another checkpoint.")
    if file_kind(path) == "safetensors":
        return read_safetensors(path, what, shown)
    try:
        return _load_pickled(path, what, trust)
    except CheckpointError as exc:
        if shown != path:  # a download or a model name: name it, then where its copy lies
            raise type(exc)(str(exc).replace(f"{what} {path}", f"{what} {shown} (downloaded to {path})", 1)) \
                from None
        raise


# --------------------------------------------------------------------------- #
# safetensors
# --------------------------------------------------------------------------- #
def _encode(value: Any) -> Any:
    """JSON for a config value, keeping tuples and non-string dict keys (category ids)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    return str(value)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {_decode(k): _decode(v) for k, v in value["__items__"]}
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def read_safetensors(path: str, what: str = "checkpoint", shown: Optional[str] = None) -> Dict[str, Any]:
    """{"model": tensors, **this project's metadata} of a .safetensors file."""
    from safetensors import SafetensorError, safe_open

    shown = shown or path
    try:
        state = {}
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{what} {shown} is not a readable safetensors file ({_first_line(exc)}); it may be "
                              f"truncated. Use another copy.") from None
    out: Dict[str, Any] = {"model": state}
    extra = metadata.get(SAFETENSORS_METADATA_KEY)
    if extra:
        try:
            out.update(_decode(json.loads(extra)))
        except ValueError:
            logger.warning("%s %s: its '%s' metadata is not valid JSON; only the weights are used", what, shown,
                           SAFETENSORS_METADATA_KEY)
    return out


def _unshared(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous CPU tensors that share no memory: safetensors stores no aliases, and DINO's shared
    decoder heads appear under two names, so a tensor whose memory was seen before is stored as a copy."""
    seen = set()
    out = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        ptr = tensor.untyped_storage().data_ptr()
        if (ptr and ptr in seen) or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(ptr)
        out[key] = tensor
    return out


def _safetensors_header(metadata: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    header = {"format": "pt"}
    if metadata:
        header[SAFETENSORS_METADATA_KEY] = json.dumps(_encode(dict(metadata)), sort_keys=True)
    return header


def write_safetensors(path: str, state: Mapping[str, torch.Tensor],
                      metadata: Optional[Mapping[str, Any]] = None) -> None:
    """Write `state` with `metadata` (JSON under the 'dino' key) to `path` as safetensors, atomically
    (util/atomic.py: a temporary file beside it, renamed into place when complete)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from util.atomic import atomic_output

    with atomic_output(path) as tmp:
        try:
            save_file(_unshared(state), tmp, metadata=_safetensors_header(metadata))
        except SafetensorError as exc:  # its I/O errors as what they are (full disk, permissions)
            code = re.search(r"os error (\d+)", str(exc))
            if code:
                raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from exc
            raise


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: Optional[Mapping[str, Any]] = None) -> bytes:
    """The .safetensors serialisation of `state` with `metadata` (for files written elsewhere)."""
    from safetensors.torch import save

    return save(_unshared(state), metadata=_safetensors_header(metadata))
