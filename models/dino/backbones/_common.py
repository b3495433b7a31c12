"""Pieces shared by the hierarchical backbones (Swin, ConvNeXt, FocalNet,
InternImage): stochastic depth, the two-layer MLP, gradient checkpointing,
argument checks and the common tail of every builder (pretrained weights,
freezing).

Only torch is imported here, so a missing optional package can never stop the
registry from importing a backbone module.
"""
import logging
import re
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from .pretrained import (PretrainedSource, StateDict, attach_pretrained_source, freeze_by_keywords, load_pretrained,
                         pretrained_path, trusts_checkpoints)

logger = logging.getLogger("dino.backbone")


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `p`."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad [B, C, H, W] at the bottom/right so H and W are multiples of `multiple`."""
    return F.pad(x, (0, (multiple - x.shape[-1] % multiple) % multiple,
                     0, (multiple - x.shape[-2] % multiple) % multiple))


def drop_path_or_identity(p: float) -> nn.Module:
    return DropPath(p) if p > 0 else nn.Identity()


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on the last dimension (keys `fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def run_block(block: nn.Module, use_checkpoint: bool, *args):
    """`block(*args)`, through activation checkpointing when asked and useful."""
    if use_checkpoint and torch.is_grad_enabled() and block.training:
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def stochastic_depth_rates(rate: float, depths: Sequence[int]) -> List[List[float]]:
    """Linearly increasing drop-path rates over all blocks, split per stage."""
    rates = torch.linspace(0, rate, sum(depths), device="cpu").tolist()
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


def stage_indices(args) -> List[int]:
    """`args.return_interm_indices` as a list, checked to be increasing stages in 0..3."""
    indices = list(args.return_interm_indices)
    if not indices or sorted(set(indices)) != indices or not set(indices) <= {0, 1, 2, 3}:
        raise ValueError(f"return_interm_indices={indices} must be increasing stage indexes in 0..3")
    return indices


def reject_dilation(args) -> None:
    if getattr(args, "dilation", False):
        raise ValueError(f"dilation=True is not supported by backbone {args.backbone} "
                         f"(only Swin and ResNet-50/101 have a dilated last stage); set dilation=False")


def drop_path_rate(args, default: float) -> float:
    """`args.backbone_drop_path_rate` when set, else the family's default."""
    value = getattr(args, "backbone_drop_path_rate", None)
    return default if value is None else float(value)


def resize_rel_pos_table(table: Tensor, window: int) -> Tensor:
    """Bicubic resize of a relative position bias table [(2w-1)^2, heads] to window `window`."""
    old = int(round(table.shape[0] ** 0.5))
    new = 2 * window - 1
    if old == new:
        return table
    heads = table.shape[1]
    grid = table.t().reshape(1, heads, old, old).float()
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return grid.reshape(heads, new * new).t().to(table.dtype)


def finish_body(body: nn.Module, args, file_names: Dict[str, str],
                remap: Callable[[StateDict, nn.Module], StateDict],
                source: Optional[PretrainedSource] = None) -> nn.Module:
    """Load the pretrained file named by the args (if any), else attach where the weights come from
    (`source`, or the file to get: see pretrained.load_library_weights); then apply
    `backbone_freeze_keywords`."""
    path = pretrained_path(args, file_names)
    if path:
        load_pretrained(body, path, remap, what=args.backbone, trust=trusts_checkpoints(args))
    else:
        hint = file_names.get(args.backbone, f"the pretrained file of {args.backbone}")
        attach_pretrained_source(body, args, source or PretrainedSource(args.backbone, hint, remap=remap))
    freeze_by_keywords(body, getattr(args, "backbone_freeze_keywords", None))
    return body


def strip_prefix(state: StateDict, prefixes: Sequence[str] = ("backbone.",)) -> StateDict:
    """Drop a leading `backbone.` when every key carries it (backbones saved by detection code)."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def keep_own_buffers(state: StateDict, module: nn.Module, suffix: str) -> StateDict:
    """Replace tensors whose key ends with `suffix` by the module's own (deterministic) values."""
    own = module.state_dict()
    out = {k: v for k, v in state.items() if not k.endswith(suffix)}
    out.update({k: v for k, v in own.items() if k.endswith(suffix)})
    return out


def linear_from_conv1x1(state: StateDict, module: nn.Module) -> StateDict:
    """Reshape [out, in, 1, 1] weights where the module holds a Linear [out, in]."""
    own = module.state_dict()
    out = {}
    for k, v in state.items():
        if k in own and v.ndim == 4 and own[k].ndim == 2 and v.shape[2:] == (1, 1):
            v = v.flatten(1)
        out[k] = v
    return out


def optional_list(value, n: int) -> Optional[List[int]]:
    """An int broadcast to n entries, a sequence as a list, None stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"expected {n} values, got {value}")
    return value


def rename_keys(state: StateDict, rules: Sequence[tuple], drop: Sequence[str] = (), what: str = "checkpoint") -> StateDict:
    """Rename every key by the first matching `(regex, replacement)` of `rules` (re.fullmatch).

    Keys matching a regex of `drop` are left out (constant buffers the body
    recomputes). A key that neither rule nor drop pattern matches raises a
    ValueError naming it (and how many more there are), so a checkpoint of
    another model cannot load half-way.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    dropped = [re.compile(pattern) for pattern in drop]
    out: StateDict = {}
    unknown: List[str] = []
    for key, value in state.items():
        if any(p.fullmatch(key) for p in dropped):
            continue
        for pattern, repl in compiled:
            match = pattern.fullmatch(key)
            if match:
                out[match.expand(repl)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ValueError(f"{what}: backbone key {unknown[0]!r}{more} has no place in this backbone")
    return out
