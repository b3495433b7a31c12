"""tools/export_onnx.py --external-data (the form graphs over 2 GB, EVA-01 / ViT-g, are written in):
a tiny DINO exported through the tool with its check, at sizes whose coarsest level is one pixel
high; the graph and OUTPUT.data are written atomically and run from another folder."""
import contextlib
import io
import os
import shutil
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from helpers import TINY_OPTIONS, build_tiny_model, random_images  # noqa: E402

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -r requirements-export.txt)")
onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install -r requirements-export.txt)")
CONFIG = os.path.join(REPO, "config", "DINO", "DINO_4scale.py")


def export(tmp_path, *extra):
    from tools.export_onnx import main as export_tool
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = export_tool(["-c", CONFIG, "--checkpoint", str(tmp_path / "checkpoint.pth"),
                              "--output", str(tmp_path / "tiny.onnx"), "--size", "64", "85",
                              "--check-sizes", "64", "82", "70", "64", "--options", *TINY_OPTIONS, *extra])
    return status, out.getvalue()


def test_external_data_export_passes_its_check_and_runs_from_elsewhere(tmp_path):
    model, _, _ = build_tiny_model()
    model.eval()
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint.pth")
    status, out = export(tmp_path, "--external-data")
    checks = [line.strip() for line in out.splitlines() if "top-100 detections matched" in line]
    assert status == 0 and len(checks) == 4 and all(line.startswith("ok") for line in checks), out
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth", "tiny.onnx", "tiny.onnx.data"]  # no temporary left
    graph = onnx.load(str(tmp_path / "tiny.onnx"), load_external_data=False)
    assert os.path.getsize(tmp_path / "tiny.onnx") < 1 << 20 < os.path.getsize(tmp_path / "tiny.onnx.data")
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    mode = os.stat(tmp_path / "tiny.onnx").st_mode & 0o777
    assert os.stat(tmp_path / "tiny.onnx.data").st_mode & 0o777 == mode  # as readable as the graph

    moved = tmp_path / "deploy"
    moved.mkdir()
    for name in ("tiny.onnx", "tiny.onnx.data"):
        shutil.move(str(tmp_path / name), str(moved / name))
    sess = ort.InferenceSession(str(moved / "tiny.onnx"), providers=["CPUExecutionProvider"])
    [image] = random_images([(64, 96)], seed=2)
    with torch.no_grad():
        ref = model([image])
    logits, boxes = sess.run(["pred_logits", "pred_boxes"], {"images": image[None].numpy()})
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), atol=1e-4, rtol=0)


def test_existing_weights_file_is_refused_without_overwrite(tmp_path, capsys):
    (tmp_path / "checkpoint.pth").write_bytes(b"not read")
    (tmp_path / "tiny.onnx.data").write_bytes(b"keep me")
    status, _ = export(tmp_path)
    err = capsys.readouterr().err
    assert status == 2 and "tiny.onnx.data exists" in err and "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "tiny.onnx.data").read_bytes() == b"keep me" and not (tmp_path / "tiny.onnx").exists()
