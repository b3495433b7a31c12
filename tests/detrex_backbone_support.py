"""Synthetic detrex backbone checkpoints for tests/test_detrex_backbones.py.

A fixture in tests/fixtures/detrex_backbones/ stores no weights: only the key
list of detrex's backbone (name, shape, dtype, in detrex's order), a seed, the
input and detrex's outputs. `synth_state` redraws the same weights from the
seed, so the recorder (which ran detrex's own module on CPU with these
weights) and the test see identical tensors.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Sequence, Tuple

import torch
from torch import Tensor

# (name, shape, dtype, fixed): `fixed` marks constant buffers detrex computes from its config
# (RoPE tables, relative-position indexes); they are zeros here, the remaps drop them.
KeySpec = Tuple[str, Tuple[int, ...], str, bool]


_POOL_SIZE = 1_048_573  # a prime, so tiled rows do not line up with a matrix's width


def _normal(shape: Tuple[int, ...], g: torch.Generator, pool: Tensor) -> Tensor:
    """Standard-normal values for `shape`: a window of the seeded pool at a seeded offset.

    Cheap for the 200M-parameter backbones (a copy instead of fresh random draws).
    """
    n = math.prod(shape)
    start = int(torch.randint(0, pool.numel(), (1,), generator=g))
    chunks = []
    while n > 0:
        take = min(n, pool.numel() - start)
        chunks.append(pool[start:start + take])
        n, start = n - take, 0
    return torch.cat(chunks).reshape(shape)


def _draw(name: str, shape: Tuple[int, ...], g: torch.Generator, pool: Tensor) -> Tensor:
    """One float tensor: norms / layer scales near 1, biases near 0, matrices scaled by 1/sqrt(fan-in)."""
    x = _normal(shape, g, pool)
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) <= 1:
        if leaf == "running_var":
            return 1.0 + 0.1 * x.abs()
        if leaf == "weight" or leaf.startswith("gamma"):  # norms and layer scales
            return 1.0 + 0.1 * x
        return 0.1 * x
    if "pos_embed" in name:
        return x.mul_(0.02)
    if "table" in name or "rel_pos" in name:  # relative-position biases: large enough to matter
        return x.mul_(0.5)
    fan_in = max(1, math.prod(shape) // shape[0])
    return x.div_(math.sqrt(fan_in))


def synth_state(keys: Sequence[KeySpec], seed: int) -> Dict[str, Tensor]:
    """detrex-layout backbone state dict redrawn from `seed` (fixed and integer buffers are zeros)."""
    g = torch.Generator().manual_seed(int(seed))
    pool = torch.randn(_POOL_SIZE, generator=g)
    out: Dict[str, Tensor] = {}
    for name, shape, dtype, fixed in keys:
        shape = tuple(int(s) for s in shape)
        torch_dtype = getattr(torch, dtype.split(".")[1])
        if fixed or not torch_dtype.is_floating_point:
            out[name] = torch.zeros(shape, dtype=torch_dtype)
        else:
            out[name] = _draw(name, shape, g, pool)
    return out


def key_spec(state: Dict[str, Tensor], fixed: Sequence[str] = ()) -> list:
    """[(name, shape, dtype, fixed)] of a state dict, in its order (what a fixture stores)."""
    return [(k, tuple(v.shape), str(v.dtype), k in fixed) for k, v in state.items()]


@contextlib.contextmanager
def skip_weight_init():
    """torch.nn.init's initializers as no-ops: every parameter is overwritten by the strict load
    that follows, and initializing 200M parameters costs seconds."""
    import torch.nn.init as init

    names = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
             "xavier_normal_", "constant_", "ones_", "zeros_")
    saved = {name: getattr(init, name) for name in names}
    try:
        for name in names:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def build_remapped_body(fixture: dict) -> torch.nn.Module:
    """This project's body for a fixture, loaded strictly from the remapped synthetic detrex weights."""
    import argparse

    from models.dino.backbones.registry import build_backbone_body, get_layout_remap

    args = argparse.Namespace(use_checkpoint=False, backbone_freeze_keywords=None, **fixture["args"])
    with skip_weight_init():
        body = build_backbone_body(args)
    state = synth_state(fixture["keys"], fixture["seed"])
    body.load_state_dict(get_layout_remap("detrex", args.backbone)(state, args), strict=True)
    return body.eval()


def max_diffs(fixture: dict) -> list:
    """[(max |ours - detrex|, max |detrex|)] per output level of a fixture."""
    body = build_remapped_body(fixture)
    with torch.no_grad():
        outs = body(fixture["input"].float())
    refs = fixture["outputs"]
    if len(outs) != len(refs):
        raise AssertionError(f"{len(outs)} levels, detrex returned {len(refs)}")
    result = []
    for ours, ref in zip(outs, refs):
        ref = ref.float()
        if ours.shape != ref.shape:
            raise AssertionError(f"level shape {tuple(ours.shape)} != detrex {tuple(ref.shape)}")
        result.append(((ours - ref).abs().max().item(), ref.abs().max().item()))
    return result
