"""torch.compile of a DINO for a run, the Detector and the tools (`--compile [BACKEND]`).

The module is compiled in place (`nn.Module.compile`), so its state dict, its checkpoints and
DDP see the same parameters as without it. Shapes are dynamic from the first call: images of
other sizes reuse the compiled graph (recompiles are bounded; docs/OPS.md says how many a
multi-scale run makes). The deformable-attention op is one node of the graph
(torch.ops.dino.ms_deform_attn with its fake kernel); which implementation it runs is logged
here, before compiling, because nothing is logged from inside a compiled graph.

Backends: "inductor" (default; generated C++ / Triton kernels: minutes to compile, measured
~1.1x for R50 inference on a 2-core AVX2 CPU), "aot_eager" (graph capture and AOTAutograd with
eager kernels: quick, for checking that a model compiles, and for debugging).
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn

from .ops import _ext

logger = logging.getLogger("dino.compile")
BACKENDS = ("inductor", "aot_eager", "eager")


def compile_model(model: nn.Module, device: torch.device, backend: str = "inductor",
                  mode: Optional[str] = None) -> nn.Module:
    """`model` (in place, also returned) compiled with `backend`, dynamic shapes."""
    if backend not in BACKENDS:
        raise ValueError(f"compile backend {backend!r}: use one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    _ext.announce(device.type, _ext.backend(device))  # inside the graph nothing is logged
    model.compile(backend=backend, dynamic=True, mode=mode)
    logger.info("torch.compile: backend %s, dynamic shapes (the first call of each phase compiles; %s)",
                backend, "minutes on a CPU" if backend == "inductor" else "seconds")
    return model
