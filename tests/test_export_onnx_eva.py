"""ONNX export of the DINO-EVA configs (EVA-02 and EVA-01 plain ViTs), reduced to two blocks
(one windowed, one global) and a one-layer transformer, random weights, small images.

EVA-02 goes through tools/export_onnx.py (its own check must pass: two other sizes and a
padded batch of 2); EVA-01 through models.dino.export. Both are then compared with PyTorch
at sizes below and above `pad_to_square` (the graph pads to the square itself, so image
sizes stay dynamic beyond it) and on a padded batch.
"""
import contextlib
import io
import os
import sys
import warnings

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from helpers import build_args, random_images  # noqa: E402

from util.misc import nested_tensor_from_tensor_list  # noqa: E402

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -r requirements-export.txt)")
pytest.importorskip("onnx", reason="onnx not installed (pip install -r requirements-export.txt)")
pytest.importorskip("timm", reason="the EVA backbones are built from timm blocks")

EVA02 = "config/detrex/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py"
EVA01 = "config/detrex/dino_eva_01_1280_4scale_12ep.py"
# two blocks (block 1 global, block 0 windowed), a small transformer, squares of 160 px
REDUCED = ["vit_depth=2", "vit_global_attn_indexes=[1]", "use_checkpoint=False", "backbone_pretrained=False",
           "enc_layers=1", "dec_layers=1", "num_queries=50", "dn_number=0", "pad_to_square=160"]


def build(config):
    """(model in eval mode, its args) of `config` reduced, seeded random weights."""
    from main import build_model_main
    args = build_args(config, REDUCED)
    torch.manual_seed(0)
    model, _, _ = build_model_main(args)
    return model.eval(), args


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def assert_onnx_equals_pytorch(sess, model, sizes):
    images = random_images(sizes, seed=4)
    with torch.no_grad():
        ref = model(images)
    padded = nested_tensor_from_tensor_list(images).tensors
    logits, boxes = sess.run(["pred_logits", "pred_boxes"], {"images": padded.numpy()})
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def eva02(tmp_path_factory):
    """EVA-02 exported by the tool (with its check) from a checkpoint of random weights that records
    its settings, as main.py saves them (no -c)."""
    from tools.export_onnx import main as export_tool
    model, args = build(EVA02)
    folder = tmp_path_factory.mktemp("eva02")
    torch.save({"model": model.state_dict(), "args": args}, folder / "checkpoint.pth")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = export_tool(["--checkpoint", str(folder / "checkpoint.pth"), "--output", str(folder / "eva02.onnx"),
                              "--size", "128", "160", "--check-sizes", "96", "128", "160", "112"])
    return model, folder / "eva02.onnx", status, out.getvalue()


def test_eva02_exports_and_passes_the_tools_check(eva02):
    _, path, status, out = eva02
    checks = [line.strip() for line in out.splitlines() if "top-100 detections matched" in line]
    assert status == 0 and path.is_file(), out
    assert len(checks) == 4 and all(line.startswith("ok") for line in checks), out


@pytest.mark.parametrize("sizes", [[(224, 176)], [(144, 240), (200, 96)]], ids=["224x176", "batch2-padded"])
def test_eva02_onnx_equals_pytorch_beyond_the_padded_square(eva02, sizes):
    model, path, _, _ = eva02
    assert_onnx_equals_pytorch(session(path), model, sizes)


def test_eva01_onnx_equals_pytorch(tmp_path):
    from models.dino.export import export_onnx
    model, _ = build(EVA01)
    path = tmp_path / "eva01.onnx"
    export_onnx(model, str(path), torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0)))
    sess = session(path)
    for sizes in ([(96, 128)], [(224, 176)], [(160, 112), (96, 144)]):
        assert_onnx_equals_pytorch(sess, model, sizes)


def test_traced_rope_table_equals_timms():
    from timm.layers import build_rotary_pos_embed

    from models.dino.backbones.eva import rope_table
    for h, w, step in [(8, 10, 16 / 64), (16, 16, 1.0), (1, 7, 16 / 80)]:
        sin, cos = build_rotary_pos_embed([h, w], dim=64, in_pixels=False, ref_feat_shape=[h * step, w * step])
        torch.testing.assert_close(rope_table(h, w, step, 64, torch.device("cpu")), torch.cat([sin, cos], -1),
                                   atol=1e-6, rtol=0)


def test_exported_position_embedding_follows_the_grid_from_the_pretraining_size(tmp_path):
    """Traced at the pre-training grid (14 x 14, where resampling is skipped in eager mode), the graph
    still resamples for other grids."""
    from models.dino.backbones.vit_common import resample_grid_embed

    pos = torch.randn(1, 14 * 14, 8, generator=torch.Generator().manual_seed(0))

    class AddPos(torch.nn.Module):
        def forward(self, x):
            return x + resample_grid_embed(pos, tuple(x.shape[1:3])).reshape(1, x.shape[1], x.shape[2], -1)

    path = str(tmp_path / "pos.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(AddPos(), (torch.zeros(1, 14, 14, 8),), path, input_names=["x"], opset_version=18,
                          dynamic_axes={"x": {1: "h", 2: "w"}}, dynamo=False)
    sess = session(path)
    for h, w in [(14, 14), (8, 10), (20, 13)]:
        x = torch.zeros(1, h, w, 8)
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], AddPos()(x).numpy(), atol=1e-5, rtol=0)
