"""The graph of tools/export_onnx.py on OpenVINO's CPU runtime (no plugins, no extensions).

A tiny DINO (tests/helpers.TINY_OPTIONS, random weights) is exported by the tool with
--postprocess at 96x128; OpenVINO compiles the .onnx as it is and runs it at two other
sizes and a padded batch of 2 (dynamic N, H, W). Its outputs must equal ONNX Runtime's.
OpenVINO is asked for f32 inference: on CPUs with bf16 units (AMX, AVX512-BF16) its
default precision is bf16, which is not a parity setting (docs/EXPORT.md).
"""
import os
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from helpers import TINY_OPTIONS, build_tiny_model, random_images  # noqa: E402

from util.misc import nested_tensor_from_tensor_list  # noqa: E402

ov = pytest.importorskip("openvino", reason="openvino not installed (pip install -r requirements-export.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -r requirements-export.txt)")
pytest.importorskip("onnx", reason="onnx not installed (pip install -r requirements-export.txt)")

OUTPUTS = ["pred_logits", "pred_boxes", "scores", "labels", "boxes"]


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    """(ONNX Runtime session, OpenVINO compiled model) of one tiny exported graph."""
    from tools.export_onnx import main as export_tool
    model, _, _ = build_tiny_model()
    folder = tmp_path_factory.mktemp("openvino")
    torch.save({"model": model.state_dict()}, folder / "checkpoint.pth")
    path = str(folder / "tiny.onnx")
    argv = ["-c", os.path.join(REPO, "config", "DINO", "DINO_4scale.py"), "--checkpoint",
            str(folder / "checkpoint.pth"), "--output", path, "--postprocess", "--size", "96", "128",
            "--no-check", "--options", *TINY_OPTIONS]  # the ONNX Runtime check has its own tests
    assert export_tool(argv) == 0
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return sess, compiled


def test_openvino_sees_the_dynamic_interface(runtimes):
    _, compiled = runtimes
    assert [i.get_any_name() for i in compiled.inputs] == ["images", "orig_sizes"]
    assert [o.get_any_name() for o in compiled.outputs] == OUTPUTS
    shape = compiled.input("images").get_partial_shape()
    assert shape[1].get_length() == 3 and all(shape[i].is_dynamic for i in (0, 2, 3))


@pytest.mark.parametrize("sizes", [[(112, 144)], [(80, 104)], [(112, 144), (80, 104)]],
                         ids=["112x144", "80x104", "batch2-padded"])
def test_openvino_equals_onnxruntime(runtimes, sizes):
    sess, compiled = runtimes
    images = nested_tensor_from_tensor_list(random_images(sizes, seed=1)).tensors.numpy()
    orig_sizes = np.array([[480, 640], [600, 520]][:len(sizes)], dtype=np.int64)
    feeds = {"images": images, "orig_sizes": orig_sizes}
    expected = dict(zip(OUTPUTS, sess.run(OUTPUTS, feeds)))
    got = compiled(feeds)
    assert got["pred_logits"].shape == (len(sizes), 20, 5)
    for name in OUTPUTS:
        assert got[name].shape == expected[name].shape, name
        atol = 1e-2 if name == "boxes" else 1e-4  # pixels of a 640-pixel image
        np.testing.assert_allclose(got[name], expected[name], atol=atol, rtol=0, err_msg=name)
