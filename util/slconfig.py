"""Python config files, as the original DINO code reads them.

A config is a Python file whose top-level names become config keys. A file may
set `_base_ = ['other.py', ...]` (paths relative to itself) to start from other
configs; its own values override theirs. `--options k=v ...` on the command
line are merged on top with `merge_from_dict`.
"""
from __future__ import annotations

import ast
import copy
import difflib
import os
import pprint
import runpy
from argparse import Action
from typing import Any, Dict, Iterable, Mapping, Optional

import addict

BASE_KEY = "_base_"

# Keys the original training scripts pass with --options although no code reads
# them. Accepted (so the original commands run unchanged) and ignored.
LEGACY_IGNORED_KEYS = frozenset({"dn_scalar", "dn_label_coef", "dn_bbox_coef"})

# Keys that a config may leave unset and that --options may add (paths to local
# pretrained files and similar).
OPTIONAL_KEYS = frozenset({
    "backbone_dir", "pretrained_backbone_path", "backbone_checkpoint",
    "exif_transpose",   # 'auto' (default), 'always' or 'never': see datasets/image_io.py
    "backbone_drop_path_rate", "focal_levels", "focal_windows",  # backbone variants (docs/BACKBONES.md)
    "focal_normalize_modulator", "vit_pad_input",  # detrex's FocalNet fl4 / ViTDet variants (same doc)
})


class ConfigError(ValueError):
    """A config file or an --options value that cannot be used, with the reason."""


class ConfigDict(addict.Dict):
    """addict's attribute dict (cfg.lr, cfg.model.depth; nested dicts converted), except that a
    missing key is an error (KeyError / AttributeError) instead of a new empty dict, so a typo
    in a key does not pass silently."""

    def __missing__(self, name: str) -> Any:
        raise KeyError(name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> Dict[str, Any]:
        """Plain (deep-copied) dicts and lists all the way down."""
        return copy.deepcopy(super().to_dict())


def _to_config_dict(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ConfigDict(dict(value))
    return value


def _merge(override: Mapping[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    """Merge `override` into a copy of `base`; nested dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(value, out[key])
        else:
            out[key] = value
    return out


def _read_python_config(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ConfigError(f"config file {path} has a syntax error at line {exc.lineno}: {exc.msg}") from exc
    namespace = runpy.run_path(path)
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("__") and not callable(v) and not isinstance(v, type(os))
    }


class SLConfig:
    """Config read from a Python file (see module docstring)."""

    def __init__(self, cfg_dict: Optional[Mapping[str, Any]] = None, filename: Optional[str] = None):
        object.__setattr__(self, "_cfg_dict", _to_config_dict(dict(cfg_dict or {})))
        object.__setattr__(self, "_filename", filename)

    # ------------------------------------------------------------- reading
    @staticmethod
    def _file2dict(filename: str) -> Dict[str, Any]:
        filename = os.path.abspath(os.path.expanduser(filename))
        if not os.path.isfile(filename):
            raise ConfigError(f"config file not found: {filename}")
        if not filename.endswith(".py"):
            raise ConfigError(f"config file must be a Python file (.py): {filename}")
        own = _read_python_config(filename)
        bases = own.pop(BASE_KEY, [])
        if isinstance(bases, str):
            bases = [bases]
        merged: Dict[str, Any] = {}
        for base in bases:
            base_path = os.path.join(os.path.dirname(filename), base)
            merged = _merge(SLConfig._file2dict(base_path), merged)
        return _merge(own, merged)

    @staticmethod
    def fromfile(filename: str) -> "SLConfig":
        """Read a config file, resolving `_base_` files first."""
        return SLConfig(SLConfig._file2dict(filename), filename=filename)

    # ------------------------------------------------------------- access
    @property
    def filename(self) -> Optional[str]:
        return self._filename

    def __getattr__(self, name: str) -> Any:
        try:
            return self._cfg_dict[name]
        except KeyError as exc:
            raise AttributeError(f"config has no key '{name}'") from exc

    def __setattr__(self, name: str, value: Any) -> None:
        self._cfg_dict[name] = _to_config_dict(value)

    def __getitem__(self, name: str) -> Any:
        return self._cfg_dict[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._cfg_dict[name] = _to_config_dict(value)

    def __contains__(self, name: str) -> bool:
        return name in self._cfg_dict

    def __iter__(self):
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __getstate__(self):
        return {"cfg": self._cfg_dict.to_dict(), "filename": self._filename}

    def __setstate__(self, state):
        self.__init__(state["cfg"], state["filename"])

    def to_dict(self) -> Dict[str, Any]:
        """A plain (deep-copied) dict of all keys."""
        return self._cfg_dict.to_dict()

    def copy(self) -> "SLConfig":
        return SLConfig(self.to_dict(), self._filename)

    deepcopy = copy

    # ------------------------------------------------------------- writing
    @property
    def pretty_text(self) -> str:
        """The config as a Python file that `fromfile` reads back to the same dict."""
        lines = [f"{key} = {pprint.pformat(value, width=100, sort_dicts=False)}" for key, value in self.to_dict().items()]
        return "\n".join(lines) + "\n"

    def dump(self, file: Optional[str] = None) -> Optional[str]:
        """Write the config as Python to `file`, or return the text."""
        if file is None:
            return self.pretty_text
        with open(file, "w", encoding="utf-8") as f:
            f.write(self.pretty_text)
        return None

    def merge_from_dict(self, options: Mapping[str, Any]) -> None:
        """Merge `{'a.b': v}`-style overrides; dotted keys reach into nested dicts."""
        nested: Dict[str, Any] = {}
        for full_key, value in options.items():
            node = nested
            *parents, leaf = full_key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        object.__setattr__(self, "_cfg_dict", _to_config_dict(_merge(nested, self._cfg_dict)))

    def __repr__(self) -> str:
        return f"SLConfig(filename={self._filename!r}, keys={len(self)})"


# ------------------------------------------------------------------ --options

def parse_option_value(text: str) -> Any:
    """Turn one command-line value into int, float, bool, None, list or str.

    `1` -> 1, `1e-4` -> 0.0001, `TRUE`/`false` -> bool, `None` -> None,
    `a,b` and `[a,b]` -> lists (elements parsed the same way), else the string.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_option_value(v) for v in inner.split(",")] if inner else []
    if "," in text:
        return [parse_option_value(v) for v in text.split(",")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


class DictAction(Action):
    """argparse action collecting `KEY=VALUE` pairs into a dict (values parsed by parse_option_value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            if "=" not in item:
                parser.error(f"{option_string} expects KEY=VALUE pairs, got '{item}'")
            key, value = item.split("=", 1)
            options[key.strip()] = parse_option_value(value)
        setattr(namespace, self.dest, options)


def _type_name(value: Any) -> str:
    return "list" if isinstance(value, (list, tuple)) else type(value).__name__


def check_options(cfg: SLConfig, options: Mapping[str, Any], extra_keys: Iterable[str] = ()) -> Dict[str, Any]:
    """Validate --options against the config before merging, and normalize them.

    Unknown keys (not in the config, not optional, not legacy) and values whose
    type cannot stand for the config's value raise ConfigError naming the key.
    A scalar given for a list key becomes a one-element list; an int for a float
    key becomes a float. Legacy keys of the original scripts are dropped.
    """
    known = set(cfg) | set(OPTIONAL_KEYS) | set(extra_keys)
    out: Dict[str, Any] = {}
    for key, value in options.items():
        top = key.split(".")[0]
        if top in LEGACY_IGNORED_KEYS:
            continue
        if top not in known:
            close = difflib.get_close_matches(top, sorted(known), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"--options: unknown config key '{key}' (not set in {cfg.filename}).{hint}")
        current = cfg[top] if top in cfg and "." not in key else None
        out[key] = _coerce(key, value, current)
    return out


# Keys a dataset can set ('auto', datasets/class_counts.py) or a whole number fixes.
AUTO_INT_KEYS = ("num_classes", "dn_labelbook_size")


def _coerce(key: str, value: Any, current: Any) -> Any:
    if key in AUTO_INT_KEYS and value is not None:
        if (isinstance(value, int) and not isinstance(value, bool)) or value == "auto":
            return value
        raise ConfigError(f"--options {key}={value!r}: expected a whole number or auto (set from the data)")
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"--options {key}={value!r}: expected TRUE or FALSE")
    if isinstance(current, (list, tuple)):
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        raise ConfigError(f"--options {key}={value!r}: expected a number like the config's {current!r}")
    if isinstance(current, str) and not isinstance(value, str):
        return str(value)
    return value
