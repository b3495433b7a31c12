"""tools/inference.py and util/visualizer.py: helpers, run_inference with a stub model, and the CLI."""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tools import inference as inf  # noqa: E402
from util.visualizer import color_for_label, draw_detections, draw_ground_truth, label_text  # noqa: E402


def _image(path, w=80, h=60, color=(40, 90, 160)):
    Image.new("RGB", (w, h), color).save(path)
    return str(path)


# --------------------------------------------------------------------------- visualizer
def test_color_for_label_is_fixed_and_distinct():
    assert color_for_label(3) == color_for_label(3)
    cols = [color_for_label(i) for i in range(40)]
    assert len(set(cols[:15])) == 15
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in cols)


def test_label_text():
    assert label_text(2, 0.876, {2: "square"}) == "square 0.88"
    assert label_text(7, None, {2: "square"}) == "7"
    assert label_text(7, 0.5) == "7 0.50"


def test_draw_detections_draws_boxes_in_class_colour():
    img = Image.new("RGB", (100, 80), (0, 0, 0))
    out = draw_detections(img, torch.tensor([[10.0, 30.0, 60.0, 70.0]]), torch.tensor([1]),
                          torch.tensor([0.9]), {1: "circle"}, line_width=2)
    assert out.size == img.size and out is not img
    assert img.getpixel((10, 50)) == (0, 0, 0)  # the input is untouched
    arr = np.asarray(out)
    assert tuple(arr[50, 10]) == color_for_label(1)  # left edge of the box
    assert tuple(arr[50, 60]) == color_for_label(1)  # right edge
    assert tuple(arr[50, 35]) == (0, 0, 0)  # inside stays
    # label background above the box
    assert tuple(arr[28, 11]) == color_for_label(1)


def test_draw_detections_empty_and_mismatch():
    img = Image.new("RGB", (32, 32))
    out = draw_detections(img, [], [], [])
    assert np.array_equal(np.asarray(out), np.asarray(img))
    with pytest.raises(ValueError):
        draw_detections(img, [[0, 0, 5, 5]], [1, 2])


def test_draw_ground_truth_xywh(tmp_path):
    path = _image(tmp_path / "a.png", 64, 64, (0, 0, 0))
    out = draw_ground_truth(path, [[10, 20, 30, 30]], [2], {2: "square"}, line_width=1)
    arr = np.asarray(out)
    col = color_for_label(2)
    # dashed: some pixels of the right edge (x=40) are coloured
    assert any(tuple(arr[y, 40]) == col for y in range(22, 50))


# --------------------------------------------------------------------------- preprocessing
def test_resized_hw_matches_detr_rule():
    assert inf.resized_hw(200, 100, 800, 1333) == (666, 1332)  # capped by max_size
    assert inf.resized_hw(100, 200, 800, 1333) == (1332, 666)
    assert inf.resized_hw(640, 480, 800, 1333) == (800, 1066)
    assert inf.resized_hw(480, 640, 800, None) == (1066, 800)
    assert inf.resized_hw(160, 128, 128, 200) == (128, 160)  # already at size


def test_val_resize_params():
    assert inf.val_resize_params(None) == (800, 1333)
    a = argparse.Namespace(data_aug_scales=[96, 128, 112], data_aug_max_size=200)
    assert inf.val_resize_params(a) == (128, 200)
    a.data_aug_scale_overlap = 0.5
    assert inf.val_resize_params(a) == (64, 100)


def test_preprocess_image():
    img = Image.new("RGB", (150, 100), (124, 116, 104))  # ~ ImageNet mean
    x = inf.preprocess_image(img, 128, 180)
    assert x.shape == (3, 120, 180) and x.dtype == torch.float32
    assert x.abs().max() < 0.05  # normalized mean colour ~ 0
    g = inf.preprocess_image(Image.new("L", (50, 50), 255), 64)
    assert g.shape == (3, 64, 64)


def test_val_transform_matches_standalone_preprocessing():
    """The transform used for inference is the dataset's val transform; the fallback agrees with it."""
    args = argparse.Namespace(data_aug_scales=[96, 128], data_aug_max_size=150)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (70, 110, 3), dtype=np.uint8))
    x = inf.make_val_transform(args)(img)
    assert x.shape == (3, 95, 149)  # shorter side 128 would make the longer one exceed 150
    assert torch.allclose(x, inf.preprocess_image(img, 128, 150), atol=1e-6)


# --------------------------------------------------------------------------- names / files / checkpoint
def test_category_names(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    cats = [{"id": 1, "name": "circle", "supercategory": "shape"}, {"id": 3, "name": "star", "supercategory": "shape"}]
    (ann / "instances_train2017.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    path = str(ann / "instances_train2017.json")
    assert inf.load_category_names(path) == {1: "circle", 3: "star"}
    # from args: explicit names, then the train json under coco_path
    assert inf.category_names_from_args(argparse.Namespace(category_names=["a", "b"])) == {1: "a", 2: "b"}
    assert inf.category_names_from_args({"class_names": {"4": "x"}}) == {4: "x"}
    assert inf.category_names_from_args(argparse.Namespace(coco_path=str(tmp_path))) == {1: "circle", 3: "star"}
    assert inf.category_names_from_args(argparse.Namespace(coco_path=str(tmp_path / "nope"))) is None
    # priority: json > checkpoint args > run args > {}
    ck = argparse.Namespace(category_names=["ck"])
    run = argparse.Namespace(category_names=["run"])
    assert inf.resolve_category_names(path, ck, run) == {1: "circle", 3: "star"}
    assert inf.resolve_category_names(None, ck, run) == {1: "ck"}
    assert inf.resolve_category_names(None, None, run) == {1: "run"}
    assert inf.resolve_category_names(None, None, argparse.Namespace()) == {}


def test_collect_image_paths(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    b = _image(d / "b.jpg")
    a = _image(d / "a.png")
    (d / "notes.txt").write_text("x")
    single = _image(tmp_path / "c.png")
    assert inf.collect_image_paths([str(d), single]) == [a, b, single]
    with pytest.raises(FileNotFoundError):
        inf.collect_image_paths([str(tmp_path / "missing.jpg")])


def test_load_checkpoint(tmp_path):
    sd = {"module.linear.weight": torch.ones(2, 2), "linear.bias": torch.zeros(2)}
    p = str(tmp_path / "ck.pth")
    torch.save({"model": sd, "args": argparse.Namespace(num_classes=3), "epoch": 4}, p)
    state, args = inf.load_checkpoint(p)
    assert set(state) == {"linear.weight", "linear.bias"}
    assert args.num_classes == 3
    torch.save(sd, p)  # a bare state dict
    state, args = inf.load_checkpoint(p)
    assert set(state) == {"linear.weight", "linear.bias"} and args is None
    torch.save({"optimizer": {}}, p)
    with pytest.raises(KeyError):
        inf.load_checkpoint(p)


def test_result_to_detection_threshold_sort_clip():
    result = {"scores": torch.tensor([0.2, 0.9, 0.5]), "labels": torch.tensor([1, 2, 3]),
              "boxes": torch.tensor([[0.0, 0, 5, 5], [-3.0, 2, 50, 120], [1.0, 1, 4, 4]])}
    det = inf.result_to_detection(result, 0.3, 40, 100, {2: "square"})
    assert det["scores"] == [0.9, 0.5]
    assert det["labels"] == [2, 3]
    assert det["names"] == ["square", "3"]
    assert det["boxes"][0] == [0.0, 2.0, 40.0, 100.0]


# --------------------------------------------------------------------------- run_inference with a stub model
class _StubModel(torch.nn.Module):
    """Records input shapes; 'detects' one box in the middle of the image."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.seen = []
        self.modes = []

    def forward(self, samples):
        self.seen.append(tuple(samples[0].shape))
        self.modes.append(self.training)
        return {"pred_logits": torch.zeros(1, 2, 3), "pred_boxes": torch.tensor([[[0.5, 0.5, 0.5, 0.5],
                                                                                  [0.1, 0.1, 0.1, 0.1]]])}


def _stub_postprocess(outputs, target_sizes):
    h, w = target_sizes[0].tolist()
    boxes = torch.tensor([[0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h], [0, 0, 0.1 * w, 0.1 * h]])
    return [{"scores": torch.tensor([0.8, 0.1]), "labels": torch.tensor([2, 1]), "boxes": boxes}]


def test_run_inference_with_stub_model(tmp_path):
    imgs = [_image(tmp_path / "one.jpg", 80, 60), _image(tmp_path / "two.png", 50, 100)]
    sub = tmp_path / "sub"
    sub.mkdir()
    imgs.append(_image(sub / "one.png", 40, 40))  # same stem as the first
    out = str(tmp_path / "out")
    model = _StubModel().train()
    args = argparse.Namespace(data_aug_scales=[64, 96], data_aug_max_size=150)
    dets = inf.run_inference(model, {"bbox": _stub_postprocess}, imgs, out, args, {2: "square"}, threshold=0.3)
    assert model.training and model.modes == [False, False, False]  # eval inside, mode restored
    assert model.seen == [(3, 96, 128), (3, 150, 75), (3, 96, 96)]
    assert len(dets) == 3
    assert dets[0]["boxes"] == [[20.0, 15.0, 60.0, 45.0]] and dets[0]["names"] == ["square"]
    assert dets[0]["scores"] == [0.8] and dets[0]["labels"] == [2]
    assert (dets[1]["width"], dets[1]["height"]) == (50, 100)
    pngs = sorted(os.listdir(out))
    assert pngs == ["detections.json", "one.png", "one_1.png", "two.png"]
    with Image.open(os.path.join(out, "one.png")) as im:
        assert im.size == (512, 384)  # enlarged for drawing (vis_min_size=384)
    with open(os.path.join(out, "detections.json")) as f:
        data = json.load(f)
    assert data["threshold"] == 0.3 and data["category_names"] == {"2": "square"}
    assert [d["file"] for d in data["detections"]] == [os.path.abspath(p) for p in imgs]
    assert data["detections"][0]["boxes"] == [[20.0, 15.0, 60.0, 45.0]]
    # no output dir: nothing written, detections still returned
    dets2 = inf.run_inference(model, _stub_postprocess, imgs[:1], None, args, threshold=0.05, vis_min_size=0)
    assert len(dets2[0]["scores"]) == 2 and dets2[0]["output_image"] is None


# --------------------------------------------------------------------------- the CLI, end to end
def _main_importable():
    if not os.path.isfile(os.path.join(REPO, "main.py")):
        return False, "main.py does not exist yet"
    try:
        spec = importlib.util.find_spec("main")
        if spec is None or not (spec.origin or "").startswith(REPO):
            return False, "main.py is not importable from the repo root"
        import main  # noqa: F401
        if not hasattr(main, "build_model_main") or not hasattr(main, "get_args_parser"):
            return False, "main.py lacks build_model_main/get_args_parser"
    except Exception as exc:  # noqa: BLE001
        return False, f"main.py is not importable: {type(exc).__name__}: {exc}"
    return True, ""


TINY_OPTIONS = ["backbone=resnet18", "hidden_dim=32", "dim_feedforward=64", "enc_layers=1", "dec_layers=1",
                "num_queries=20", "dn_number=5", "num_classes=6", "dn_labelbook_size=7", "nheads=4",
                "num_select=20", "data_aug_scales=[64]", "data_aug_max_size=96"]


def test_cli_end_to_end_tiny_random_model(tmp_path):
    ok, reason = _main_importable()
    if not ok:
        pytest.skip(reason)
    config = os.path.join(REPO, "config", "DINO", "DINO_4scale.py")
    if not os.path.isfile(config):
        pytest.skip("config/DINO/DINO_4scale.py does not exist yet")

    options = dict(o.split("=", 1) for o in TINY_OPTIONS)
    from util.slconfig import parse_option_value
    options = {k: parse_option_value(v) for k, v in options.items()}
    torch.manual_seed(0)
    model, _post, _args = inf.build_model_from_config(config, options, "cpu")
    ckpt = str(tmp_path / "tiny.pth")
    torch.save({"model": model.state_dict()}, ckpt)

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _image(imgs / "a.jpg", 90, 70, (200, 30, 30))
    _image(imgs / "b.png", 60, 80, (30, 200, 30))
    ann = tmp_path / "instances_train2017.json"
    cats = [{"id": i, "name": f"shape{i}", "supercategory": "shape"} for i in range(1, 6)]
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    out = tmp_path / "out"
    # the CLI's main() in-process (a subprocess would pay for importing torch and building again)
    returned = inf.main(["-c", config, "--checkpoint", ckpt, "--images", str(imgs), "--output_dir", str(out),
                         "--threshold", "0.0", "--device", "cpu", "--category-names", str(ann),
                         "--options", *TINY_OPTIONS])
    assert len(returned) == 2
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "detections.json"]
    with open(out / "detections.json") as f:
        data = json.load(f)
    dets = data["detections"]
    assert [os.path.basename(d["file"]) for d in dets] == ["a.jpg", "b.png"]
    for d in dets:
        assert len(d["boxes"]) == len(d["scores"]) == len(d["labels"]) == len(d["names"]) > 0
        for (x0, y0, x1, y1) in d["boxes"]:
            assert 0 <= x0 <= x1 <= d["width"] and 0 <= y0 <= y1 <= d["height"]
        assert d["scores"] == sorted(d["scores"], reverse=True)
        for lab, name in zip(d["labels"], d["names"]):
            assert name == (f"shape{lab}" if 1 <= lab <= 5 else str(lab))
    assert data["category_names"]["1"] == "shape1"
    with Image.open(out / "a.png") as im:
        assert im.size == (494, 384)  # 90x70 enlarged for drawing

    # a checkpoint that does not fit the model is refused (strict loading)
    torch.save({"model": {"module.bogus": torch.zeros(1)}}, ckpt)
    with pytest.raises(RuntimeError):
        inf.main(["-c", config, "--checkpoint", ckpt, "--images", str(imgs), "--output_dir", str(out),
                  "--device", "cpu", "--options", *TINY_OPTIONS])


def test_cli_help_runs_as_script():
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "inference.py"), "--help"],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 0, res.stderr
    assert "--checkpoint" in res.stdout and "--category-names" in res.stdout
