"""Checkpoint files: atomic writes, loading with clear errors, fitting weights to a model.

Writing
    `save_checkpoint_files(obj, paths)` serializes `obj` once, into a hidden
    temporary file next to the last path (`.NAME.tmp-PID`), copies it for the
    other paths, fsyncs each, then renames them into place (`os.replace`), the
    last path last, and fsyncs the folder. A process killed at any moment
    leaves every destination either as it was before or complete; never
    truncated. Leftover temporary files are removed by `remove_stale_tmp_files`
    (util/atomic.py, shared with the tools' outputs).

Reading
    `load_checkpoint(path, what)` reads a checkpoint of this project or of the
    original DINO code (a dict with 'model' and maybe 'optimizer',
    'lr_scheduler', 'epoch', 'args' as a pickled argparse.Namespace,
    'ema_model'), a bare state dict, or a .safetensors file, as data: nothing
    in the file runs (util/weights_io.py). Problems (missing file, a folder, a
    truncated or foreign file, a Python object outside the allow-list, no
    'model' entry) raise `CheckpointError` whose message names the file and
    says what to do. (Converting detrex's layout is models/dino/checkpoint_layouts.py's.)

Fitting
    `load_model_weights(model, state, ...)` compares the state dict with the
    model before loading: keys of other shapes (another class count, another
    backbone, 4- vs 5-scale) raise CheckpointError naming them, with the
    `--finetune_ignore` words that would skip them.

Test hooks (fault injection; unset in normal use)
    DINO_FAULT_CKPT="STAGE@NAME#N" makes the N-th write of the file NAME (e.g.
    checkpoint.pth) in this process stop at STAGE, `mid_write` (part of the
    temporary file written) or `before_replace` (temporary file complete, not
    yet renamed), touch the file named by DINO_FAULT_MARKER and sleep there
    until killed, so tests can kill a run at exactly that point.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from util.atomic import (OutputError, atomic_write_text, fsync_dir, remove_stale_tmp_files,  # noqa: F401
                         tmp_path_for, write_error)
from util.weights_io import CheckpointError, UntrustedCheckpointError, read_weights_file  # noqa: F401

logger = logging.getLogger("dino.checkpoint")

MAX_LISTED = 8


# --------------------------------------------------------------------------- #
# writing
# --------------------------------------------------------------------------- #
_write_counts: Dict[str, int] = {}


def _fault_stage(final_path: str) -> Optional[str]:
    spec = os.environ.get("DINO_FAULT_CKPT", "")
    if not spec:
        return None
    name = os.path.basename(final_path)
    _write_counts[name] = _write_counts.get(name, 0) + 1
    try:
        stage, rest = spec.split("@", 1)
        target, nth = (rest.split("#", 1) + ["1"])[:2]
        nth = int(nth)
    except ValueError:
        return None
    if target == name and _write_counts[name] == nth:
        return stage
    return None


def _hang_for_test(stage: str, path: str) -> None:
    marker = os.environ.get("DINO_FAULT_MARKER")
    if marker:
        with open(marker, "w") as f:
            f.write(f"{stage} {path}\n")
    print(f"[fault injection] paused at {stage} while writing {path}", flush=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        time.sleep(0.2)
    raise SystemExit(99)


class _RecordingWriter:
    """The file torch.save writes to: keeps the OSError of a failed write (torch reports a full disk
    as an unrelated "unexpected pos"), and for tests (`pause`) hangs after the first chunk."""

    def __init__(self, f, path: str, pause: bool = False):
        self.f, self.path, self.pause = f, path, pause
        self.written = 0
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            n = self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.written += n
        if self.pause and self.written >= 1024:
            self.f.flush()
            os.fsync(self.f.fileno())
            _hang_for_test("mid_write", self.path)
        return n

    def flush(self) -> None:
        self.f.flush()


def _copy_for_save(src: str, dst: str, stage: Optional[str]) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        if stage == "mid_write":
            fout.write(fin.read(max(1, os.path.getsize(src) // 2)))
            fout.flush()
            os.fsync(fout.fileno())
            _hang_for_test(stage, dst)
        shutil.copyfileobj(fin, fout, 16 * 2 ** 20)
        fout.flush()
        os.fsync(fout.fileno())


def _serialize(obj: Any, tmp: str, final: str, stage: Optional[str]) -> None:
    """torch.save `obj` into `tmp`, fsynced; a failed write raises OutputError naming `final`."""
    writer = None
    try:
        with open(tmp, "wb") as f:
            writer = _RecordingWriter(f, final, pause=stage == "mid_write")
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_error(final, exc) from exc
    except RuntimeError as exc:
        if writer is not None and writer.error is not None:
            raise write_error(final, writer.error) from exc
        raise


def save_checkpoint_files(obj: Any, paths: Sequence[str]) -> None:
    """Write `obj` with torch.save to every path atomically (see module doc).

    The last path is the one that matters most (checkpoint.pth, which a restart resumes
    from): it is serialized first and renamed into place last. A failed write (full disk,
    permissions) raises util.atomic.OutputError naming the file; no destination is changed.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return
    primary = paths[-1]
    tmps: List[Tuple[str, str]] = []
    try:
        primary_tmp = tmp_path_for(primary, keep_extension=False)
        stage = _fault_stage(primary)
        tmps.append((primary_tmp, primary))
        _serialize(obj, primary_tmp, primary, stage)
        if stage == "before_replace":
            _hang_for_test(stage, primary)
        for path in paths[:-1]:
            tmp = tmp_path_for(path, keep_extension=False)
            tmps.insert(len(tmps) - 1, (tmp, path))
            extra_stage = _fault_stage(path)
            try:
                _copy_for_save(primary_tmp, tmp, extra_stage)
            except OSError as exc:
                raise write_error(path, exc) from exc
            if extra_stage == "before_replace":
                _hang_for_test(extra_stage, path)
        for tmp, path in tmps:  # the primary last
            os.replace(tmp, path)
        for folder in {os.path.dirname(os.path.abspath(p)) for p in paths}:
            fsync_dir(folder)
    except BaseException:
        for tmp, _ in tmps:
            try:
                os.remove(tmp)
            except OSError:
                pass
        raise


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def load_checkpoint(path: str, what: str = "--resume", *, trust: bool = False) -> Dict[str, Any]:
    """Read a checkpoint file (or URL) into a dict with at least 'model' (see module doc).

    Nothing in the file runs unless `trust` (util/weights_io.py). The keys are the file's:
    models/dino/checkpoint_layouts.in_project_layout maps detrex's onto this project's.
    """
    return _read_checkpoint(path, what, trust)


def _read_checkpoint(path: str, what: str, trust: bool = False) -> Dict[str, Any]:
    return _as_checkpoint(read_weights_file(path, what, trust=trust), os.path.expanduser(str(path)), what)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _as_checkpoint(raw: Any, path: str, what: str) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{what} {path} holds a {type(raw).__name__}, not a checkpoint (a dict with a "
                              f"'model' state dict).")
    if "model" not in raw:
        if _is_state_dict(raw):
            return {"model": clean_state_dict(raw)}
        for key in ("state_dict", "model_state_dict"):
            if _is_state_dict(raw.get(key)):
                return {"model": clean_state_dict(raw[key])}
        keys = ", ".join(repr(k) for k in list(raw)[:MAX_LISTED])
        raise CheckpointError(f"{what} {path} has no 'model' entry (its keys: {keys}); a DINO checkpoint is a "
                              f"dict with 'model' (and 'optimizer', 'lr_scheduler', 'epoch', ...).")
    model = raw["model"]
    if hasattr(model, "state_dict") and not isinstance(model, dict):
        model = model.state_dict()
    if not _is_state_dict(model):
        raise CheckpointError(f"{what} {path}: its 'model' entry is not a state dict of tensors.")
    out = dict(raw)
    out["model"] = clean_state_dict(model)
    if isinstance(out.get("ema_model"), dict):
        out["ema_model"] = clean_state_dict(out["ema_model"])
    return out


def clean_state_dict(state: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Strip the 'module.' prefix(es) that DistributedDataParallel adds."""
    out = OrderedDict()
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


# --------------------------------------------------------------------------- #
# fitting weights to a model
# --------------------------------------------------------------------------- #
def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "")


def _ignore_word(key: str) -> str:
    """A --finetune_ignore word that skips `key` (and the keys shaped like it)."""
    if key.startswith("label_enc"):
        return "label_enc.weight"
    for word in ("class_embed", "bbox_embed", "level_embed", "input_proj", "tgt_embed", "refpoint_embed"):
        if word in key:
            return word
    if key.startswith("backbone."):
        return "backbone.0"
    return key.rsplit(".", 1)[0]


def _class_counts_in(shapes: Dict[str, Sequence[int]]) -> str:
    """'num_classes=N dn_labelbook_size=M' read off a checkpoint's class rows ('' when not there)."""
    rows = [s[0] for k, s in shapes.items() if k.endswith("class_embed.0.weight") or k == "class_embed.weight"]
    counts = [f"num_classes={rows[0]}"] if rows else []
    if "label_enc.weight" in shapes:  # dn_labelbook_size + 1 rows (the last one: no class)
        counts.append(f"dn_labelbook_size={shapes['label_enc.weight'][0] - 1}")
    return " ".join(counts)


def _config_hint(keys: Iterable[str], file_shapes: Optional[Dict[str, Sequence[int]]] = None) -> str:
    """What configuration the keys that do not fit point to; with the file's shapes, the class counts
    it was trained with, as the --options that make the model fit."""
    keys = list(keys)
    hints = []
    if any("input_proj" in k or "level_embed" in k for k in keys):
        hints.append("the number of feature levels differs (a 4-scale vs a 5-scale config? use the config "
                      "the checkpoint was trained with)")
    if any(k.startswith("backbone.") for k in keys):
        hints.append("the backbone differs (set `backbone` to the one it was trained with)")
    if any("class_embed" in k or "label_enc" in k for k in keys):
        counts = _class_counts_in(file_shapes or {})
        hints.append("num_classes / dn_labelbook_size differ" +
                     (f" (the file's: --options {counts}, to run it as it was trained)" if counts else ""))
    if any(".layers." in k and k.startswith("transformer.") for k in keys):
        hints.append("enc_layers / dec_layers / hidden_dim differ")
    return "; ".join(hints)


def compare_state(model_state: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]):
    """(missing, unexpected, mismatched[(key, ckpt_shape, model_shape)]) of `state` against the model."""
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    mismatched = [(k, tuple(state[k].shape), tuple(model_state[k].shape))
                  for k in state if k in model_state and tuple(state[k].shape) != tuple(model_state[k].shape)]
    return missing, unexpected, mismatched


def load_model_weights(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str, what: str,
                       strict: bool = True, ignore: Sequence[str] = (), log: Optional[logging.Logger] = None,
                       set_aside: Sequence[str] = ()):
    """Load `state` into `model` after checking that it fits (see module doc).

    strict: missing or unexpected keys are errors (resume / eval); otherwise
    they are reported and the rest is loaded (fine-tuning). Keys containing a
    word of `ignore` are dropped first. Keys containing a word of `set_aside`
    are left to a later step (the class rows --finetune_class_map copies by
    name): neither loaded nor reported, in the file or in the model.
    Returns (missing, unexpected, ignored).
    """
    log = log or logger

    def aside(key: str) -> bool:
        return any(word in key for word in set_aside)

    state = OrderedDict((k, v) for k, v in clean_state_dict(state).items() if not aside(k))
    ignored = [k for k in state if any(word in k for word in ignore)]
    if ignored:
        state = OrderedDict((k, v) for k, v in state.items() if k not in set(ignored))
    model_state = model.state_dict()
    missing, unexpected, mismatched = compare_state(model_state, state)
    missing = [k for k in missing if not aside(k)]

    fitting = len(state) - len(unexpected) - len(mismatched)
    if fitting == 0 and len(model_state) > 0:
        example = next(iter(state), None)
        raise CheckpointError(
            f"{what} {path} does not hold weights of this model: none of its {len(state)} tensors match a "
            f"parameter of the model (checkpoint key e.g. {example!r}, model key e.g. "
            f"{next(iter(model_state))!r}). Is it a DINO checkpoint?")
    if mismatched:
        listed = [f"{k} (checkpoint {list(a)} vs model {list(b)})" for k, a, b in mismatched]
        words = sorted({_ignore_word(k) for k, _, _ in mismatched})
        hint = _config_hint((k for k, _, _ in mismatched), {k: tuple(v.shape) for k, v in state.items()})
        flag = "--pretrain_model_path" if what != "--pretrain_model_path" else what
        raise CheckpointError(
            f"{what} {path} does not fit the model: {len(mismatched)} tensors have other shapes: "
            f"{_listing(listed)}. " + (f"Likely {hint}. " if hint else "") +
            f"To fine-tune from it with another configuration, load it with {flag} {path} "
            f"--finetune_ignore {' '.join(words)}.")
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} model keys are not in the file ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} keys of the file are not in the model ({_listing(unexpected)})")
        hint = _config_hint(missing + unexpected)
        raise CheckpointError(
            f"{what} {path} does not fit the model: " + "; ".join(parts) + ". " +
            (f"Likely {hint}. " if hint else "") +
            f"Use the config it was trained with, or load what fits with --pretrain_model_path {path} "
            f"(add --finetune_ignore WORDS to skip keys).")
    model.load_state_dict(state, strict=False)
    if ignored:
        log.info("%s: ignored %d keys matching --finetune_ignore: %s", what, len(ignored), _listing(ignored))
    if missing:
        log.warning("%s: %d model keys not in %s (left as initialised): %s", what, len(missing), path,
                    _listing(missing))
    if unexpected:
        log.warning("%s: %d keys of %s not used by the model: %s", what, len(unexpected), path,
                    _listing(unexpected))
    return missing, unexpected, ignored


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any], path: str) -> None:
    """optimizer.load_state_dict with a CheckpointError when the state belongs to other parameters."""
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"--resume {path}: its optimizer state does not fit this model's parameter groups "
            f"({_first_line(exc)}); it was trained with other frozen layers or param_dict_type. Start from its "
            f"weights with --pretrain_model_path {path} instead.") from None
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for name, t in list(st.items()):
                # fresh, aligned storage: tensors read from a file can sit at offsets that send
                # vectorised kernels down another path, which changes the last bit of results; in
                # the parameter's own layout (channels_last convolutions in CPU training), as the
                # state an uninterrupted run creates with zeros_like(param)
                if isinstance(t, torch.Tensor):
                    like_param = t.shape == p.shape and t.dtype == p.dtype and t.device == p.device
                    fresh = torch.empty_like(p) if like_param else torch.empty_like(
                        t, memory_format=torch.contiguous_format)
                    st[name] = fresh.copy_(t)
            for name in ("exp_avg", "exp_avg_sq"):
                t = st.get(name)
                if isinstance(t, torch.Tensor) and t.shape != p.shape:
                    raise CheckpointError(
                        f"--resume {path}: its optimizer state has a tensor of shape {list(t.shape)} for a "
                        f"parameter of shape {list(p.shape)} (parameters in another order or of another "
                        f"model). Start from its weights with --pretrain_model_path {path} instead.")


# --------------------------------------------------------------------------- #
# random number generator states
# --------------------------------------------------------------------------- #
def get_rng_state() -> Dict[str, Any]:
    """The states of torch, numpy and random, in a form torch.load(weights_only=True) reads."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])),
        "random": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None,
    }
    return state


def set_rng_state(state: Optional[Dict[str, Any]]) -> bool:
    """Restore what `get_rng_state` returned; False if `state` is unusable."""
    if not isinstance(state, dict):
        return False
    try:
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
        rnd = state["random"]
        random.setstate((rnd[0], tuple(rnd[1]), rnd[2]))
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    except (KeyError, TypeError, ValueError, RuntimeError):
        return False
    return True
