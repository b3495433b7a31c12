"""Numeric precision of a run: which autocast dtype `--amp` gives on a device, and memory layout.

`--amp` means float16 autocast on CUDA (with a GradScaler, see engine.py) and
bfloat16 autocast on a CPU that computes bfloat16 natively: AMX-BF16 (Intel
Sapphire Rapids and newer) or AVX512-BF16 (Cooper Lake, Zen 4 and newer).
Elsewhere oneDNN would only emulate bfloat16, slower than float32, so such a
CPU runs float32 and the log says why. The deformable-attention op computes
in float32 under autocast in any case (models/dino/ops).

    from util.precision import inference_autocast
    with inference_autocast(device, amp=True):     # logs the choice once
        outputs = model(images)

`channels_last(module)` puts a module in the NHWC layout that oneDNN's
convolutions use natively; models/dino/inference_prep.py applies it to a ResNet
backbone where it was measured to pay (bfloat16 on the CPU, docs/OPS.md).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import ContextManager, Optional, Set, Tuple

import torch
from torch import nn

logger = logging.getLogger("dino.precision")

# /proc/cpuinfo flags of native bfloat16 arithmetic, best first, with their usual names
BF16_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
_logged: Set[Tuple[str, bool, Optional[torch.dtype]]] = set()


@dataclass(frozen=True)
class CpuBf16:
    """What this CPU offers for bfloat16: `features` are the native bfloat16 instruction sets
    found (empty: none), `capability` is PyTorch's kernel level (e.g. 'AVX512')."""

    features: Tuple[str, ...]
    capability: str

    @property
    def supported(self) -> bool:
        return bool(self.features)

    def describe(self) -> str:
        if self.supported:
            return f"{', '.join(self.features)} (PyTorch CPU capability {self.capability})"
        return f"no AVX512-BF16 or AMX-BF16 (PyTorch CPU capability {self.capability})"


def cpuinfo_field(name: str) -> str:
    """The first `name : value` of /proc/cpuinfo (Linux), e.g. "vendor_id" or "flags"; "" where absent."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def _cpuinfo_flags() -> Set[str]:
    return set(cpuinfo_field("flags").split())


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> CpuBf16:
    """Native bfloat16 support of this CPU, from /proc/cpuinfo (Linux). Where that file is
    missing, oneDNN's own check (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) decides."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    flags = _cpuinfo_flags()
    if flags:
        return CpuBf16(tuple(name for flag, name in BF16_FLAGS if flag in flags), capability)
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return CpuBf16(("bfloat16 (oneDNN)",) if native else (), capability)


def autocast_dtype(device: torch.device, amp: bool) -> Optional[torch.dtype]:
    """The autocast dtype `--amp` gives on `device`, or None for float32."""
    device = torch.device(device)
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_support().supported:
        return torch.bfloat16
    return None


def precision_message(device: torch.device, amp: bool) -> str:
    """One line saying which precision a run on `device` uses with this `amp` setting, and why."""
    device = torch.device(device)
    dtype = autocast_dtype(device, amp)
    if not amp:
        return f"precision on {device.type}: float32 (no --amp)"
    if dtype is torch.float16:
        return f"precision on {device.type}: float16 autocast (--amp)"
    if dtype is torch.bfloat16:
        return f"precision on cpu: bfloat16 autocast (--amp), CPU has {cpu_bf16_support().describe()}"
    if device.type == "cpu":
        return (f"precision on cpu: float32: --amp asks for bfloat16 but this CPU has "
                f"{cpu_bf16_support().describe()}; bfloat16 would only be emulated (slower)")
    return f"precision on {device.type}: float32 (--amp has no effect on {device.type})"


def autocast_context(device: torch.device, amp: bool, log: bool = True) -> ContextManager:
    """Autocast for `--amp` on `device` (see module doc), a no-op context for float32.
    The first use of each (device type, amp) setting logs `precision_message` once."""
    device = torch.device(device)
    dtype = autocast_dtype(device, amp)
    key = (device.type, bool(amp), dtype)
    if log and key not in _logged:
        _logged.add(key)
        logger.info(precision_message(device, amp))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def inference_autocast(device: torch.device, amp: bool) -> ContextManager:
    """Autocast for inference (no_grad is the caller's): bfloat16 on a CPU with native
    bfloat16, float16 on CUDA, float32 otherwise; logs the choice once (logger dino.precision)."""
    return autocast_context(device, amp)


def _to_channels_last(module: nn.Module, inputs):
    return tuple(x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4
                 else x for x in inputs)


def channels_last(module: nn.Module) -> nn.Module:
    """`module` (in place) with its 4-d weights in channels_last (NHWC) layout and its 4-d
    inputs converted to it, so that its convolutions run in oneDNN's native layout end to end
    (outputs come out channels_last; later layers that flatten them accept either layout)."""
    module.to(memory_format=torch.channels_last)
    module.register_forward_pre_hook(_to_channels_last)
    return module
