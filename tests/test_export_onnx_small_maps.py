"""ONNX export of a tiny DINO at images whose coarsest levels are one pixel high or wide.

A 64-pixel side gives a stride-64 level of one pixel (and stride 32 of two). The
traced graph once turned such levels into NaN anchors and reference points
(ONNX's linspace divides by steps - 1), so ONNX Runtime disagreed with PyTorch
only at those sizes. Exported at one size, checked at others, batch 1 and a padded batch of 2.
"""
import os
import sys
import warnings

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from helpers import build_tiny_model, random_images  # noqa: E402

from util.misc import nested_tensor_from_tensor_list  # noqa: E402

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -r requirements-export.txt)")
pytest.importorskip("onnx", reason="onnx not installed (pip install -r requirements-export.txt)")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from models.dino.export import export_onnx
    model, _, _ = build_tiny_model()
    model.eval()
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    export_onnx(model, path, torch.randn(1, 3, 64, 85, generator=torch.Generator().manual_seed(0)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return model, ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("sizes", [[(64, 82)], [(70, 64)], [(96, 96)], [(64, 82), (70, 64)]],
                         ids=["64x82", "70x64", "96x96", "batch2-padded"])
def test_tiny_onnx_equals_pytorch_on_one_pixel_levels(tiny_onnx, sizes):
    model, sess = tiny_onnx
    images = random_images(sizes, seed=1)
    with torch.no_grad():
        ref = model(images)
    padded = nested_tensor_from_tensor_list(images).tensors
    logits, boxes = sess.run(["pred_logits", "pred_boxes"], {"images": padded.numpy()})
    assert np.isfinite(logits).all() and np.isfinite(boxes).all()
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), atol=1e-4, rtol=0)


def test_anchor_grids_have_no_linspace_in_the_graph():
    """The anchor and reference grids trace without aten::linspace (NaN for one-pixel levels in ONNX)."""
    from models.dino.deformable_transformer import DeformableEncoder
    from models.dino.utils import encoder_output_proposals

    def grids(memory, mask):
        ratios = torch.ones(1, 2, 2)
        points = DeformableEncoder.reference_points([(1, 2), (2, 3)], ratios, memory.device)
        return points, encoder_output_proposals(memory, mask, [(1, 2), (2, 3)])[1]

    memory, mask = torch.randn(1, 8, 4), torch.zeros(1, 8, dtype=torch.bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(grids, (memory, mask))
    assert "linspace" not in str(traced.graph)
    points, proposals = grids(memory, mask)
    assert torch.isfinite(points).all()
    assert torch.equal(points[0, :2, 0], torch.tensor([[0.25, 0.5], [0.75, 0.5]]))  # level 0: 1 x 2 cells
