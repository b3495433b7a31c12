"""tools/inference.py and util/visualizer.py: inputs are never written to, outputs never
collide, errors are one line, pictures keep the input's size with readable labels."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tools import inference as inf  # noqa: E402
from util.visualizer import (color_for_label, draw_detections, drawing_sizes, label_text,  # noqa: E402
                             place_label)


def _image(path, w=80, h=60, color=(40, 90, 160)):
    Image.new("RGB", (w, h), color).save(path)
    return str(path)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny DINO saved as main.py saves it (args with class names inside)."""
    from helpers import save_tiny_checkpoint
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


# --------------------------------------------------------------------------- visualizer
def test_colour_is_keyed_by_class_name():
    assert color_for_label(3, "dog") == color_for_label(18, "dog")  # same class, other dataset's id
    assert color_for_label(3) == color_for_label(3)
    assert len({color_for_label(i) for i in range(15)}) == 15
    names = ["person", "car", "dog", "cat", "bus", "truck", "bird", "horse"]
    assert len({color_for_label(0, n) for n in names}) >= 6


def test_label_text():
    assert label_text(2, 0.876, {2: "square"}) == "square 0.88"
    assert label_text(7, None, {2: "square"}) == "7"


def test_drawing_sizes_grow_with_the_image():
    small_lw, small_font = drawing_sizes(160, 120)
    big_lw, big_font = drawing_sizes(4000, 3000)
    assert small_font >= 10 and big_font >= 60  # readable on a 12 MP photo
    assert big_lw < big_font and small_lw >= 1


def test_labels_never_cover_each_other():
    taken = []
    for _ in range(6):  # six detections of the same box
        taken.append(place_label((50, 50, 200, 200), (60, 14), (400, 300), taken))
    for i, a in enumerate(taken):
        assert 0 <= a[1] and a[3] <= 300
        for b in taken[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_draw_detections_keeps_size_and_input():
    img = Image.new("RGB", (100, 80), (0, 0, 0))
    out = draw_detections(img, torch.tensor([[10.0, 30.0, 60.0, 70.0]]), torch.tensor([1]),
                          torch.tensor([0.9]), {1: "circle"}, line_width=2)
    assert out.size == img.size and img.getpixel((10, 50)) == (0, 0, 0)
    arr = np.asarray(out)
    assert tuple(arr[50, 10]) == color_for_label(1, "circle")
    assert tuple(arr[50, 35]) == (0, 0, 0)
    with pytest.raises(ValueError):
        draw_detections(img, [[0, 0, 5, 5]], [1, 2])


# --------------------------------------------------------------------------- outputs
def test_outputs_get_their_own_names(tmp_path):
    a = tmp_path / "in"
    a.mkdir()
    inputs = [_image(a / "cat.jpg"), _image(a / "cat.png"), str(a / "cat_jpg.png")]
    _image(a / "cat_jpg.png")
    plan = inf.plan_outputs(inputs, str(tmp_path / "out"), overwrite=False)
    outs = list(plan.values())
    assert len(set(outs)) == 3 and not set(outs) & set(inputs)
    with pytest.raises(inf.ToolError, match="holds the input"):
        inf.plan_outputs(inputs, str(a), overwrite=False)


def test_existing_outputs_are_kept_unless_overwrite(tmp_path):
    inputs = [_image(tmp_path / "x.jpg")]
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_jpg.png").write_bytes(b"earlier result")
    with pytest.raises(inf.ToolError, match="--overwrite"):
        inf.plan_outputs(inputs, str(out), overwrite=False)
    assert inf.plan_outputs(inputs, str(out), overwrite=True)[inputs[0]].endswith("x_jpg.png")


# --------------------------------------------------------------------------- the tool, end to end
def test_tool_never_changes_inputs_and_skips_a_corrupt_image(tmp_path, tiny_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    _image(photos / "a.jpg", 90, 70, (200, 30, 30))
    _image(photos / "a.png", 61, 83, (30, 200, 30))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    before = _digest(photos)
    out = tmp_path / "out"
    done = inf.main(["--checkpoint", str(tiny_checkpoint), "--images", str(photos), "--output_dir", str(out),
                     "--threshold", "0", "--device", "cpu", "--quiet"])
    assert _digest(photos) == before  # not one input byte changed
    assert sorted(os.listdir(out)) == ["a_jpg.png", "a_png.png", "detections.json"]
    with Image.open(out / "a_png.png") as im:
        assert im.size == (61, 83)  # the input's resolution
    data = json.loads((out / "detections.json").read_text())
    assert [os.path.basename(d["file"]) for d in data["detections"]] == ["a.jpg", "a.png"]
    assert [os.path.basename(s["file"]) for s in data["skipped"]] == ["broken.jpg"]
    assert data["category_names"]["2"] == "square" and len(done) == 2
    for det in data["detections"]:
        assert len(det["boxes"]) == len(det["scores"]) == len(det["names"]) > 0
        assert det["scores"] == sorted(det["scores"], reverse=True)
        assert all(0 <= x0 <= x1 <= det["width"] and 0 <= y0 <= y1 <= det["height"]
                   for x0, y0, x1, y1 in det["boxes"])
    # a second run into the same folder keeps the first run's files
    first = _digest(out)
    assert inf.run_cli(["--checkpoint", str(tiny_checkpoint), "--images", str(photos), "--output_dir", str(out),
                        "--device", "cpu", "--quiet"]) == 2
    assert _digest(out) == first


def _one_line_error(capsys, argv):
    code = inf.run_cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert "Traceback" not in "\n".join(err)
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_error_cases_are_one_line(tmp_path, tiny_checkpoint, capsys):
    photos = tmp_path / "p"
    photos.mkdir()
    _image(photos / "a.jpg")
    out = str(tmp_path / "o")
    base = ["--checkpoint", str(tiny_checkpoint), "--output_dir", out, "--quiet"]
    assert "nope.jpg" in _one_line_error(capsys, base + ["--images", str(photos / "nope.jpg")])
    assert "missing.pth" in _one_line_error(capsys, ["--checkpoint", str(tmp_path / "missing.pth"), "--images",
                                                     str(photos), "--output_dir", out])
    assert "hidden_dim" in _one_line_error(capsys, base + ["--images", str(photos), "--options", "hiden_dim=8"])
    if not torch.cuda.is_available():
        assert "cuda" in _one_line_error(capsys, base + ["--images", str(photos), "--device", "cuda"])
    assert "holds the input" in _one_line_error(capsys, ["--checkpoint", str(tiny_checkpoint), "--images",
                                                         str(photos), "--output_dir", str(photos)])
    wrong = ["-c", os.path.join(REPO, "config/DINO/DINO_demo.py")]
    assert "does not fit" in _one_line_error(capsys, base + ["--images", str(photos)] + wrong)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"no image")
    assert "none of the 1 inputs" in _one_line_error(capsys, base + ["--images", str(broken)])
    assert not os.listdir(photos) == [] and sorted(os.listdir(photos)) == ["a.jpg"]


def test_video_in_annotated_video_out(tmp_path, tiny_checkpoint):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "clip.mp4"
    frames = [np.full((64, 96, 3), 40 * k, dtype=np.uint8) for k in range(4)]
    with imageio.get_writer(str(video), format="FFMPEG", fps=5, codec="libx264", macro_block_size=2) as w:
        for f in frames:
            w.append_data(f)
    before = hashlib.sha256(video.read_bytes()).hexdigest()
    out = tmp_path / "out"
    inf.main(["--checkpoint", str(tiny_checkpoint), "--images", str(video), "--output_dir", str(out),
              "--device", "cpu", "--threshold", "0", "--quiet"])
    assert hashlib.sha256(video.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(out)) == ["clip_mp4.mp4", "detections.json"]
    reader = imageio.get_reader(str(out / "clip_mp4.mp4"), format="FFMPEG")
    got = [np.asarray(f) for f in reader]
    reader.close()
    assert len(got) == 4 and got[0].shape == (64, 96, 3)
    data = json.loads((out / "detections.json").read_text())
    assert [f["frame"] for f in data["detections"][0]["frames"]] == [0, 1, 2, 3]


def test_help_examples_name_real_files_and_run_as_script():
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "inference.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert res.returncode == 0, res.stderr
    assert "--checkpoint demo_output/checkpoint.pth" in res.stdout and "--nms" in res.stdout


def _help_examples(tool: str = "inference"):
    """The `python tools/TOOL.py ...` commands of tools/inference.py's docstring, continuation
    lines joined (tool="*": every tool's, as (tool name, arguments), in the docstring's order)."""
    import shlex
    text = inf.__doc__.replace("\\\n", " ")
    found = [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith("python tools/")]
    named = [(words[1][len("tools/"):-len(".py")], words[2:]) for words in found]
    return named if tool == "*" else [argv for name, argv in named if name == tool]


def test_help_examples_run_as_written_on_the_demo_layout(tmp_path, monkeypatch):
    """The examples name the demo's files (demo_output/checkpoint.pth, data/synthetic_shapes):
    a miniature of that layout, made here, runs each of them unchanged."""
    from datasets.synthetic import generate_synthetic_coco
    from helpers import build_args
    from main import build_model_main
    generate_synthetic_coco(str(tmp_path / "data" / "synthetic_shapes"), num_train=1, num_val=2, num_classes=5,
                            min_size=64, max_size=80, seed=0)
    args = build_args("config/DINO/DINO_demo.py", ["hidden_dim=32", "dim_feedforward=32", "enc_layers=1",
                                                    "dec_layers=1", "num_queries=20", "num_select=20"])
    args.category_names = {1: "circle"}
    torch.manual_seed(0)
    model, _, _ = build_model_main(args)
    (tmp_path / "demo_output").mkdir()
    torch.save({"model": model.state_dict(), "args": args}, tmp_path / "demo_output" / "checkpoint.pth")
    monkeypatch.chdir(tmp_path)
    # by name: tests/test_zoo.py; the AOTInductor package (minutes to compile): tests/test_export_aoti.py
    examples = [(t, argv) for t, argv in _help_examples("*") if "--model" not in argv and "--aoti" not in argv]
    assert len(examples) >= 5 and {tool for tool, _ in examples} == {"inference", "make_synthetic_video"}
    from tools import make_synthetic_video
    for tool, argv in examples:  # in the docstring's order: the video is made before it is tracked
        run = inf.run_cli if tool == "inference" else make_synthetic_video.run
        assert run(argv + ["--quiet"]) == 0, argv
    assert (tmp_path / "demo_output" / "inference" / "detections.json").is_file()
    tracked = json.loads((tmp_path / "demo_output" / "tracking" / "detections.json").read_text())
    assert tracked["tracker"]["name"] == "bytetrack" and len(tracked["detections"][0]["frames"]) == 60
    assert (tmp_path / "demo_output" / "tracking" / "shapes_video_mp4.mot.txt").is_file()
    assert json.loads((tmp_path / "demo_output" / "sliced" / "detections.json").read_text())["slice"]["size"] == [96, 96]


def test_onnx_runs_without_torch_and_matches_pytorch(tmp_path, tiny_checkpoint):
    """--onnx: the same pictures and json through ONNX Runtime, with torch not importable at all."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tools import export_onnx
    onnx_path = tmp_path / "tiny.onnx"
    saved = torch.load(tiny_checkpoint, weights_only=False)
    options = [f"{k}={v}" for k, v in (("hidden_dim", 32), ("dim_feedforward", 64), ("enc_layers", 1),
                                        ("dec_layers", 2), ("num_queries", 20), ("dn_number", 3), ("nheads", 2),
                                        ("enc_n_points", 2), ("dec_n_points", 2), ("num_classes", 5),
                                        ("dn_labelbook_size", 5), ("backbone", "resnet18"),
                                        ("data_aug_scales", "[96]"), ("data_aug_max_size", 128))]
    assert saved["args"].hidden_dim == 32
    code = export_onnx.main(["-c", os.path.join(REPO, "config/DINO/DINO_4scale.py"), "--checkpoint",
                             str(tiny_checkpoint), "--output", str(onnx_path), "--no-check", "--options", *options])
    assert code == 0 and onnx_path.is_file()
    photos = tmp_path / "photos"
    photos.mkdir()
    _image(photos / "a.jpg", 90, 70, (200, 30, 30))
    _image(photos / "b.png", 72, 96, (10, 120, 220))
    before = _digest(photos)
    script = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, sys.argv[1]); "
              "from tools import inference; sys.exit(inference.run_cli(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", script, REPO, "--onnx", str(onnx_path), "--images", str(photos),
                           "--output_dir", str(tmp_path / "onnx_out"), "--threshold", "0", "--topk", "40", "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert _digest(photos) == before
    inf.main(["--checkpoint", str(tiny_checkpoint), "--images", str(photos), "--output_dir",
              str(tmp_path / "torch_out"), "--threshold", "0", "--topk", "10", "--device", "cpu", "--quiet"])
    onnx_dets = json.loads((tmp_path / "onnx_out" / "detections.json").read_text())["detections"]
    torch_dets = json.loads((tmp_path / "torch_out" / "detections.json").read_text())["detections"]
    assert sorted(os.listdir(tmp_path / "onnx_out")) == ["a_jpg.png", "b_png.png", "detections.json"]
    for a, b in zip(onnx_dets, torch_dets):  # every PyTorch detection is among ONNX Runtime's (near-ties reorder)
        assert len(b["scores"]) == 10
        for label, score, box in zip(b["labels"], b["scores"], b["boxes"]):
            assert any(label == l2 and abs(score - s2) < 2e-3 and np.abs(np.subtract(box, b2)).max() < 0.1
                       for l2, s2, b2 in zip(a["labels"], a["scores"], a["boxes"])), (label, score, box)


def test_photos_are_read_upright(tmp_path, tiny_checkpoint):
    """A camera JPEG stored sideways with an EXIF orientation is detected and drawn upright."""
    photos = tmp_path / "photos"
    photos.mkdir()
    image = Image.new("RGB", (120, 96), (120, 60, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(photos / "IMG_0001.JPG", exif=exif)
    out = tmp_path / "out"
    inf.main(["--checkpoint", str(tiny_checkpoint), "--images", str(photos), "--output_dir", str(out),
              "--threshold", "0", "--device", "cpu", "--quiet"])
    with Image.open(out / "IMG_0001_jpg.png") as drawn:
        assert drawn.size == (96, 120)
    det = json.loads((out / "detections.json").read_text())["detections"][0]
    assert (det["width"], det["height"]) == (96, 120)


def test_export_reads_the_checkpoint_settings(tmp_path, tiny_checkpoint):
    """tools/export_onnx.py with no -c: the model and class names the checkpoint records."""
    pytest.importorskip("onnxruntime")
    from deploy.onnx_detector import OnnxDetector
    from tools import export_onnx
    out = tmp_path / "model.onnx"
    assert export_onnx.main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--size", "96", "128",
                             "--check-sizes", "96", "144", "112", "96"]) == 0
    runtime = OnnxDetector(str(out))
    assert runtime.category_names == {1: "circle", 2: "square", 3: "triangle", 4: "star"}
    assert runtime.meta["resize"] == {"mode": "shorter", "size": 96, "max_size": 128}


def test_atomic_output_keeps_the_earlier_file_on_error(tmp_path):
    from util.atomic import atomic_output, atomic_write_text
    target = tmp_path / "detections.json"
    atomic_write_text(str(target), "first\n")
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half a fi")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first\n" and sorted(os.listdir(tmp_path)) == ["detections.json"]
    atomic_write_text(str(target), "second\n")
    assert target.read_text() == "second\n"
