"""ONNX export (tools/export_onnx.py, models/dino/export.py, the gather MSDeformAttn path)
and the torch-free deployment detector (deploy/onnx_detector.py).

Exports run once per module: DINO-R50-4scale with the parity fixture's synthetic
weights at small images, and the demo config with seeded random weights.
ONNX Runtime's outputs are compared with PyTorch's as the parity checker does
(rows matched as sets, tolerance 1e-3) at two sizes other than the export size,
batch 1 and a padded batch 2 of different sizes.
"""
import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from helpers import build_args  # noqa: E402
from parity_support import fraction_of_rows_matched, load_fixture, synthetic_images, synthetic_state_dict  # noqa: E402

from models.dino.export import padding_mask_from_zeros, topk_detections  # noqa: E402
from models.dino.ops.functions import ms_deform_attn_core_gather, ms_deform_attn_core_pytorch  # noqa: E402
from util.misc import nested_tensor_from_tensor_list  # noqa: E402

HAVE_ORT = True
try:
    import onnx  # noqa: F401
    import onnxruntime as ort
except ImportError:
    HAVE_ORT = False
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnx/onnxruntime not installed (pip install -r requirements-export.txt)")

R50_FIXTURE = os.path.join(REPO, "tests", "fixtures", "parity", "dino_r50_4scale")
MIN_MATCHED = 0.9  # as ../shared/parity/check.py


def export_tool(argv):
    from tools.export_onnx import main
    return main(argv)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


_torch_outputs = {}


def pytorch_outputs(model, images):
    """The model's outputs for a list of images, computed once per (model, images) in this module."""
    key = (id(model), tuple(tuple(im.shape) for im in images), float(images[0].sum()))
    if key not in _torch_outputs:
        with torch.no_grad():
            _torch_outputs[key] = model(images)
    return _torch_outputs[key]


def assert_same_outputs(sess, model, images):
    """ONNX Runtime on the padded batch == PyTorch on the image list, row sets per image."""
    padded = nested_tensor_from_tensor_list(images).tensors
    ref = pytorch_outputs(model, images)
    feeds = {"images": padded.numpy()}
    if "orig_sizes" in {i.name for i in sess.get_inputs()}:
        feeds["orig_sizes"] = np.array([list(padded.shape[-2:])] * len(images), dtype=np.int64)
    logits, boxes = sess.run(["pred_logits", "pred_boxes"], feeds)
    assert logits.shape == tuple(ref["pred_logits"].shape) and boxes.shape == tuple(ref["pred_boxes"].shape)
    for i in range(len(images)):
        r = torch.cat([ref["pred_logits"][i], ref["pred_boxes"][i]], -1)
        g = torch.cat([torch.from_numpy(logits[i]), torch.from_numpy(boxes[i])], -1)
        assert fraction_of_rows_matched(r, g) >= MIN_MATCHED, f"image {i} of a batch of {len(images)}"
    return ref, logits, boxes


# --------------------------------------------------------------------------- #
# no ONNX Runtime needed
# --------------------------------------------------------------------------- #
def test_gather_path_equals_grid_sample_path():
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[9, 13], [5, 7], [3, 4], [1, 2]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    N, M, D, Lq, P = 2, 3, 8, 17, 4
    value = torch.randn(N, int(shapes.prod(1).sum()), M, D, generator=g, dtype=torch.float64)
    loc = torch.rand(N, Lq, M, 4, P, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3  # also off the map
    loc[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0])  # exact edges
    weights = torch.rand(N, Lq, M, 4, P, generator=g, dtype=torch.float64)
    ref = ms_deform_attn_core_pytorch(value, shapes, loc, weights)
    got = ms_deform_attn_core_gather(value, shapes, starts, loc, weights)
    assert torch.allclose(ref, got, atol=1e-12, rtol=0)


def test_gather_backend_selected_by_env(monkeypatch):
    from models.dino import ops
    monkeypatch.setenv("DINO_MSDA_BACKEND", "gather")
    assert ops.backend("cpu") == "gather"


def test_padding_mask_from_zeros_equals_nested_tensor_mask():
    images = synthetic_images([(40, 56), (48, 32), (24, 60)], seed=3)
    nested = nested_tensor_from_tensor_list(images)
    assert torch.equal(padding_mask_from_zeros(nested.tensors), nested.mask)


def test_exported_mask_resize_equals_interpolate():
    from models.dino.backbone import downsample_mask, nearest_resize_mask
    g = torch.Generator().manual_seed(0)
    for h, w in [(140, 144), (137, 101), (64, 48)]:
        mask = torch.rand(2, h, w, generator=g) > 0.5
        for stride in (4, 8, 16, 32, 64):
            size = ((h + stride - 1) // stride, (w + stride - 1) // stride)
            assert torch.equal(nearest_resize_mask(mask, size), downsample_mask(mask, size))


def test_batched_topk_equals_postprocess():
    from models.dino.postprocess import PostProcess
    g = torch.Generator().manual_seed(1)
    out = {"pred_logits": torch.randn(2, 30, 7, generator=g), "pred_boxes": torch.rand(2, 30, 4, generator=g)}
    sizes = torch.tensor([[100, 150], [80, 60]])
    scores, labels, boxes = topk_detections(out["pred_logits"], out["pred_boxes"], sizes, 25)
    for i, ref in enumerate(PostProcess(num_select=25)(out, sizes)):
        assert torch.equal(ref["labels"], labels[i]) and torch.allclose(ref["scores"], scores[i])
        assert torch.allclose(ref["boxes"], boxes[i], atol=1e-4)


@needs_ort
def test_tool_refuses_to_overwrite_inputs_and_existing_files(tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pth"
    ckpt.write_bytes(b"not used")
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"keep me")
    cfg = os.path.join(REPO, "config", "DINO", "DINO_demo.py")
    assert export_tool(["-c", cfg, "--checkpoint", str(ckpt), "--output", str(ckpt), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert export_tool(["-c", cfg, "--checkpoint", str(ckpt), "--output", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert existing.read_bytes() == b"keep me" and ckpt.read_bytes() == b"not used"


@needs_ort
def test_tool_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(b"\x00garbage")
    cfg = os.path.join(REPO, "config", "DINO", "DINO_demo.py")
    assert export_tool(["-c", cfg, "--checkpoint", str(ckpt), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.pth" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["broken.pth"]  # no model, no temporary file


# --------------------------------------------------------------------------- #
# DINO-R50-4scale, synthetic weights
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    if not HAVE_ORT:
        pytest.skip("onnx/onnxruntime not installed (pip install -r requirements-export.txt)")
    from main import build_model_main
    fixture, spec = load_fixture(R50_FIXTURE)
    args = build_args(fixture["config"], fixture["options"])
    model, _, post = build_model_main(args)
    model.load_state_dict(synthetic_state_dict(spec, fixture["seed"]), strict=True)
    model.eval()
    folder = tmp_path_factory.mktemp("r50")
    ckpt = folder / "checkpoint.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    path = folder / "dino_r50.onnx"
    argv = ["-c", os.path.join(REPO, fixture["config"]), "--checkpoint", str(ckpt), "--output", str(path),
            "--postprocess", "--size", "192", "256", "--no-check"]  # the tests below compare
    if fixture["options"]:
        argv += ["--options", *fixture["options"]]
    assert export_tool(argv) == 0
    return model, post["bbox"], session(str(path)), path


def test_r50_graph_interface(r50):
    _, _, sess, path = r50
    assert [i.name for i in sess.get_inputs()] == ["images", "orig_sizes"]
    assert [o.name for o in sess.get_outputs()] == ["pred_logits", "pred_boxes", "scores", "labels", "boxes"]
    assert sess.get_inputs()[0].shape[0] == "batch" and isinstance(sess.get_inputs()[0].shape[2], str)
    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}  # no custom ops / plugins
    assert "GridSample" not in {n.op_type for n in graph.graph.node}
    assert not [f for f in os.listdir(path.parent) if ".tmp-" in f]


@pytest.mark.parametrize("sizes", [[(208, 272)], [(248, 200)], [(208, 272), (248, 200)]],
                         ids=["208x272", "248x200", "batch2-padded"])
def test_r50_onnx_equals_pytorch(r50, sizes):
    model, _, sess, _ = r50
    assert_same_outputs(sess, model, synthetic_images(sizes, seed=5))


def test_r50_postprocessed_outputs_equal_postprocess(r50):
    model, post, sess, _ = r50
    images = synthetic_images([(208, 272), (248, 200)], seed=5)  # the batch of test_r50_onnx_equals_pytorch
    padded = nested_tensor_from_tensor_list(images).tensors
    orig = torch.tensor([[480, 640], [600, 520]])
    ref = post(pytorch_outputs(model, images), orig)
    _, _, scores, labels, boxes = sess.run(None, {"images": padded.numpy(), "orig_sizes": orig.numpy()})
    for i, r in enumerate(ref):
        a = torch.cat([r["scores"][:, None], r["labels"][:, None].float(), r["boxes"] / 100], -1)
        b = torch.cat([torch.from_numpy(scores[i])[:, None], torch.from_numpy(labels[i])[:, None].float(),
                       torch.from_numpy(boxes[i]) / 100], -1)
        assert a.shape == b.shape and fraction_of_rows_matched(a, b) >= MIN_MATCHED


# --------------------------------------------------------------------------- #
# the demo config, and the deployment detector
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo config exported by the tool, with --val on a tiny synthetic COCO folder; (folder, stdout)."""
    if not HAVE_ORT:
        pytest.skip("onnx/onnxruntime not installed (pip install -r requirements-export.txt)")
    from helpers import build_export_demo_model
    model, post, args = build_export_demo_model()
    folder = tmp_path_factory.mktemp("demo")
    torch.save({"model": model.state_dict()}, folder / "checkpoint.pth")
    path = folder / "dino_demo.onnx"
    coco = folder / "shapes"
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_synthetic_coco.py"), "--out", str(coco),
                    "--num-train", "2", "--num-val", "3", "--min-size", "128", "--max-size", "160", "--classes", "5"],
                   check=True, capture_output=True)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert export_tool(["-c", os.path.join(REPO, "config/DINO/DINO_demo.py"), "--checkpoint",
                            str(folder / "checkpoint.pth"), "--output", str(path), "--val", str(coco)]) == 0
    return (model, post["bbox"], args, path), buffer.getvalue()


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run[0]


def test_tool_prints_its_check_and_coco_ap(demo_run):
    out = demo_run[1]
    checks = [line for line in out.splitlines() if "top-100 detections matched" in line]
    assert len(checks) == 4 and all(line.strip().startswith("ok") for line in checks)  # 2 sizes + batch of 2
    table = out[out.index("COCO box AP on 3 images"):].splitlines()
    assert table[2].split()[0] == "pytorch" and table[3].split()[0] == "onnx" and len(table[3].split()) == 7


@pytest.mark.parametrize("sizes", [[(112, 144)], [(140, 104)], [(112, 144), (140, 104)]],
                         ids=["112x144", "140x104", "batch2-padded"])
def test_demo_onnx_equals_pytorch(demo, sizes):
    model, _, _, path = demo
    assert_same_outputs(session(str(path)), model, synthetic_images(sizes, seed=2))


def test_onnx_detector_gives_the_pytorch_detections(demo):
    from PIL import Image

    from datasets.transforms import make_coco_transforms
    from deploy.onnx_detector import OnnxDetector
    model, post, args, path = demo
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).resize((w * 2, h * 2))
                for h, w in [(70, 90), (95, 80)]]
    transform = make_coco_transforms("val", args)
    detector = OnnxDetector(str(path), num_threads=2)
    got = detector(pictures, threshold=0.0)
    for picture, det in zip(pictures, got):
        image = transform(picture, None)[0]
        with torch.no_grad():
            [ref] = post(model([image]), torch.tensor([[picture.height, picture.width]]))
        assert det["boxes"].dtype == np.float32 and det["boxes"].shape == (len(ref["scores"]), 4)
        a = torch.cat([ref["scores"][:, None], ref["labels"][:, None].float(), ref["boxes"] / 100], -1)
        b = torch.from_numpy(np.concatenate([det["scores"][:, None], det["labels"][:, None].astype(np.float32),
                                             det["boxes"] / 100], -1))
        assert fraction_of_rows_matched(a, b) >= MIN_MATCHED
    strict = detector(pictures[0], threshold=float(got[0]["scores"][4]), topk=10, nms=0.5)[0]
    assert 1 <= len(strict["scores"]) <= 5 and (np.diff(strict["scores"]) <= 0).all()
