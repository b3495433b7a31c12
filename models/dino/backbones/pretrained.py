"""Loading pretrained backbone weights from local files.

Published checkpoints come in many containers (`{'model': ...}`,
`{'state_dict': ...}`, `{'module': ...}`, a bare state dict) and key layouts.
`load_pretrained` unwraps the container, applies a family-specific key remap
(which also drops classification heads), loads non-strictly and reports what
did not match, so a user sees at once whether the file fits.
"""
import logging
import os
from typing import Callable, Dict, Iterable, Optional

from torch import Tensor, nn

logger = logging.getLogger("dino.backbone")

StateDict = Dict[str, Tensor]
_CONTAINER_KEYS = ("model", "state_dict", "module", "model_ema", "teacher")


def read_checkpoint(path: str, trust: bool = False) -> StateDict:
    """The tensor dict inside a checkpoint file (or a released file's name: util/zoo.py), whatever its
    container; read as data (nothing in the file runs unless `trust`: util/weights_io.py)."""
    from util.weights_io import read_weights_file
    from util.zoo import zoo_model

    if not os.path.isfile(path) and zoo_model(path) is None:  # a released file's name is fetched by the reader
        raise FileNotFoundError(f"pretrained backbone file not found: {path}")
    obj = read_weights_file(path, "pretrained backbone file", trust=trust)
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def trusts_checkpoints(args) -> bool:
    """Whether the run was given --trust_checkpoint (files may then run code when read)."""
    return bool(getattr(args, "trust_checkpoint", False))


def drop_keys(state: StateDict, prefixes: Iterable[str]) -> StateDict:
    prefixes = tuple(prefixes)
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def load_pretrained(module: nn.Module, path: str,
                    remap: Optional[Callable[[StateDict, nn.Module], StateDict]] = None,
                    what: str = "backbone", trust: bool = False):
    """Load `path` into `module` (non-strict) after `remap`; log and return the mismatches."""
    state = read_checkpoint(path, trust)
    if remap is not None:
        state = remap(state, module)
    own = module.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in wrong_shape:
        state.pop(k)
    result = module.load_state_dict(state, strict=False)
    logger.info("loaded %s weights from %s: %d tensors, %d missing, %d unexpected, %d wrong shape",
                what, path, len(state) - len(result.unexpected_keys), len(result.missing_keys),
                len(result.unexpected_keys), len(wrong_shape))
    for name, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys),
                       ("wrong shape (skipped)", wrong_shape)):
        if keys:
            logger.warning("%s keys in %s (%d): %s%s", name, path, len(keys), ", ".join(keys[:8]),
                           " ..." if len(keys) > 8 else "")
    return result


def pretrained_path(args, default_file_names: Dict[str, str]) -> Optional[str]:
    """The local pretrained file for `args.backbone`: `pretrained_backbone_path`, else
    `backbone_dir` joined with the file name the authors publish, else None."""
    explicit = getattr(args, "pretrained_backbone_path", None)
    if explicit:
        return explicit
    directory = getattr(args, "backbone_dir", None)
    if directory:
        name = default_file_names.get(args.backbone)
        if name is None:
            raise ValueError(f"no default pretrained file name for backbone {args.backbone}; "
                             f"set pretrained_backbone_path instead of backbone_dir")
        return os.path.join(directory, name)
    return None


def freeze_by_keywords(module: nn.Module, keywords: Optional[Iterable[str]]) -> None:
    """requires_grad=False for parameters whose name contains any keyword."""
    if not keywords:
        return
    for name, param in module.named_parameters():
        if any(k in name for k in keywords):
            param.requires_grad_(False)


# --- weights that come through a library (torchvision, timm) ----------------
# Building a model never downloads anything: a body whose config names no local
# file gets a `PretrainedSource` attached. Only a training run that starts from
# scratch (no --resume, no --pretrain_model_path) asks for the weights, through
# `load_library_weights`; evaluating or fine-tuning takes the backbone from the
# checkpoint instead.
class BackboneWeightsError(RuntimeError):
    """The backbone's pretrained weights cannot be had; the message says what to do."""


class PretrainedSource:
    """Where a body's ImageNet weights come from when no local file is named.

    fetch: returns the state dict through the library's standard mechanism
    (cached as the library caches), or None when the library has none.
    file_hint: the file a user can download instead (name and where from).
    """

    def __init__(self, backbone: str, file_hint: str,
                 fetch: Optional[Callable[[], StateDict]] = None,
                 remap: Optional[Callable[[StateDict, nn.Module], StateDict]] = None,
                 library: str = ""):
        self.backbone, self.file_hint, self.fetch, self.remap, self.library = \
            backbone, file_hint, fetch, remap, library


def attach_pretrained_source(body: nn.Module, args, source: PretrainedSource) -> None:
    """Mark `body` as wanting `source`'s weights (nothing is loaded here)."""
    body.pretrained_source = source
    if not wants_pretrained(args):
        logger.info("%s: backbone_pretrained=False, the backbone trains from random weights", args.backbone)


def wants_pretrained(args) -> bool:
    """The config's `backbone_pretrained` (True unless a config says it trains from scratch)."""
    return bool(getattr(args, "backbone_pretrained", True))


def torchvision_source(arch: str, file_name: str, remap) -> PretrainedSource:
    """The ImageNet weights torchvision publishes for `arch` (IMAGENET1K_V1, the original's)."""
    def fetch() -> StateDict:
        import torchvision
        weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        return weights.get_state_dict(progress=True, weights_only=True)
    return PretrainedSource(arch, f"{file_name} (https://download.pytorch.org/models/{file_name})",
                            fetch, remap, library="torchvision")


def timm_source(backbone: str, timm_name: str, file_hint: str, remap) -> PretrainedSource:
    """The weights timm publishes for `timm_name` (downloaded and cached by timm / huggingface_hub)."""
    def fetch() -> StateDict:
        import timm
        return timm.create_model(timm_name, pretrained=True).state_dict()
    return PretrainedSource(backbone, file_hint, fetch, remap, library=f"timm ({timm_name})")


def _fetch_error(source: PretrainedSource, reason: str) -> BackboneWeightsError:
    how = f"could not get them through {source.library}: {reason}" if source.library else reason
    return BackboneWeightsError(
        f"backbone {source.backbone} needs its pretrained weights and {how}. Get {source.file_hint} "
        f"and set --options pretrained_backbone_path=/path/to/that/file (or backbone_dir=DIR holding it), "
        f"or set backbone_pretrained=False to train the backbone from random weights")


def load_library_weights(model: nn.Module, args) -> int:
    """Load every body's `pretrained_source` into it; return how many were loaded.

    Raises BackboneWeightsError (one line saying which file and which key) when a
    source cannot give its weights, e.g. offline with nothing cached.
    """
    if not wants_pretrained(args):
        return 0
    loaded = 0
    for body in [m for m in model.modules() if getattr(m, "pretrained_source", None) is not None]:
        source: PretrainedSource = body.pretrained_source
        if source.fetch is None:
            raise _fetch_error(source, "no library publishes them")
        try:
            state = source.fetch()
        except Exception as exc:  # network, missing package, unknown model: all say the same to a user
            raise _fetch_error(source, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        if source.remap is not None:
            state = source.remap(state, body)
        own = body.state_dict()
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        result = body.load_state_dict(state, strict=False)
        logger.info("loaded %s weights through %s: %d tensors, %d missing", source.backbone, source.library,
                    len(state), len(result.missing_keys))
        if result.missing_keys:
            logger.warning("missing keys in the %s weights (%d): %s", source.backbone, len(result.missing_keys),
                           ", ".join(result.missing_keys[:8]))
        loaded += 1
    return loaded
