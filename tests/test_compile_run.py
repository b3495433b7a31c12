"""`--compile` where users ask for it: main.py trains and the Detector detects as without it.

Backend aot_eager (graph capture, AOTAutograd, the op's fake kernel, eager kernels): quick on 2
cores and exact; inductor compiles the same graphs with generated kernels (minutes here; checked
on CUDA by scripts/check_gpu.sh, measured in docs/OPS.md).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from test_train_pipeline import describe, epoch_lines, load_ckpt, main_argv, run, stepwise_run, \
    tiny_coco

pytestmark = pytest.mark.slow  # a compiled training epoch of the tiny model: ~1-2 min on 2 cores


def test_main_compile_trains_as_eager(tmp_path_factory, tmp_path):
    """One epoch with --compile aot_eager: the same training loss as the eager epoch, the same
    state-dict keys in the checkpoint (the module is compiled in place, no `_orig_mod.`)."""
    eager = stepwise_run(tmp_path_factory) / "after_first"
    coco = tiny_coco(tmp_path_factory)
    proc = run(main_argv(coco, tmp_path / "out", "--compile", "aot_eager", epochs=1))
    assert proc.returncode == 0, describe(proc)
    assert "torch.compile: backend aot_eager" in proc.stdout + proc.stderr
    [compiled_line] = epoch_lines(tmp_path / "out" / "log.txt")
    [eager_line] = epoch_lines(eager / "log.txt")
    assert compiled_line["train_loss"] == pytest.approx(eager_line["train_loss"], rel=1e-5)
    compiled_ckpt = load_ckpt(tmp_path / "out" / "checkpoint.pth")
    eager_ckpt = load_ckpt(eager / "checkpoint.pth")
    assert list(compiled_ckpt["model"]) == list(eager_ckpt["model"])
    for key, value in eager_ckpt["model"].items():
        torch.testing.assert_close(compiled_ckpt["model"][key], value, rtol=1e-4, atol=1e-5)


def test_detector_compile_equals_eager_across_sizes(tmp_path_factory):
    from detector import Detector
    checkpoint = stepwise_run(tmp_path_factory) / "after_first" / "checkpoint.pth"
    # evaluated at 128 px (trained at 64): no feature level of one pixel, whose size-1 dimension
    # dynamo specialises (one more graph for images that have one; docs/OPS.md)
    sizes = {"data_aug_scales": [128], "data_aug_max_size": 192}
    eager = Detector.from_checkpoint(str(checkpoint), device="cpu", options=sizes)
    torch._dynamo.reset()
    counters.clear()
    compiled = Detector.from_checkpoint(str(checkpoint), device="cpu", options=sizes, compile="aot_eager")
    assert any("torch.compile" in c for c in compiled.inference_changes)
    rng = np.random.default_rng(0)
    for h, w in ((72, 96), (96, 64), (80, 80), (90, 150)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        a, b = eager(image, threshold=0.0), compiled(image, threshold=0.0)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-5)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
    # four image sizes, one compiled frame: dynamic shapes, no recompile per size
    assert counters["frames"]["ok"] == 1, dict(counters["frames"])
