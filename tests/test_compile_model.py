"""torch.compile of the whole detector (a tiny DINO) gives eager's outputs, at two image sizes,
from one dynamic-shape compile.

Backend "aot_eager": dynamo's graph capture and AOTAutograd (functionalisation,
decompositions, the operator's fake kernel) without code generation. Inductor is what a
user would run, but compiling this model with it takes minutes on 2 CPU cores (C++ code
generation of every fused kernel); scripts/check_gpu.sh runs this test with inductor on
CUDA (DINO_COMPILE_TEST_BACKEND=inductor DINO_COMPILE_TEST_DEVICE=cuda).

Images go in as a padded NestedTensor, as the data loader's collate function makes them:
padding a list inside the model compares the images' sizes, which a dynamic-shape graph
turns into guards (one more compile when another image of the batch is the largest).
"""
import os

import pytest
import torch
from torch._dynamo.utils import counters

from helpers import build_tiny_model, random_images
from models.dino import fused_linear
from models.dino.ops import _ext
from util.misc import nested_tensor_from_tensor_list

pytestmark = pytest.mark.slow  # ~1 min on 2 cores, nearly all of it the compile

@pytest.fixture
def plain_linear_layers():
    """Eager's oneDNN linear layers (fused_linear.py) round differently from the nn.Linear a compiled
    graph runs; with them off, aot_eager must reproduce eager exactly."""
    previous = fused_linear.set_enabled(False)
    yield
    fused_linear.set_enabled(previous)


BACKEND = os.environ.get("DINO_COMPILE_TEST_BACKEND", "aot_eager")
DEVICE = os.environ.get("DINO_COMPILE_TEST_DEVICE", "cpu")
SIZES = ([(96, 128), (80, 112)], [(112, 144), (128, 96)])


def _outputs(out):
    yield "pred_logits", out["pred_logits"]
    yield "pred_boxes", out["pred_boxes"]
    for i, aux in enumerate(out["aux_outputs"]):
        yield f"aux_outputs[{i}].pred_boxes", aux["pred_boxes"]
    yield "interm_outputs.pred_logits", out["interm_outputs"]["pred_logits"]
    yield "interm_outputs.pred_boxes", out["interm_outputs"]["pred_boxes"]


def test_compiled_tiny_dino_equals_eager_at_two_sizes_with_one_compile(monkeypatch, plain_linear_layers):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("DINO_COMPILE_TEST_DEVICE=cuda but no CUDA GPU")
    monkeypatch.delenv(_ext.ENV_VAR, raising=False)
    if DEVICE == "cuda":  # TF32 convolutions would round differently in the two runs' kernels
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, _, _ = build_tiny_model()
    model.to(DEVICE).eval()
    path = _ext.backend(DEVICE)
    assert path in ("compiled-cpu", "compiled-cuda", "pytorch")

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend=BACKEND, dynamic=True)
    # float32: aot_eager runs eager's kernels; inductor fuses and reorders (float rounding)
    tol = dict(rtol=0, atol=0) if BACKEND == "aot_eager" else dict(rtol=1e-3, atol=1e-4)
    for i, sizes in enumerate(SIZES):
        samples = nested_tensor_from_tensor_list([img.to(DEVICE) for img in random_images(sizes, seed=i)])
        with torch.no_grad():
            expected = dict(_outputs(model(samples)))
            got = dict(_outputs(compiled(samples)))
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, **tol, msg=lambda m: f"sizes {sizes}, {name}: {m}")
    # one frame compiled once, for both sizes (a graph break or a recompile would add frames)
    assert counters["frames"]["ok"] == 1, dict(counters["frames"])
    assert counters["stats"]["unique_graphs"] >= 1
