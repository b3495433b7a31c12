"""The Python API (detector.Detector) and where a backbone's pretrained weights come from."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from test_train_pipeline import REPO as REPO_PATH, describe, main_argv, run, straight_run, tiny_coco  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint trained by main.py with the tiny options, its COCO folder)."""
    folder = straight_run(tmp_path_factory)
    return folder / "out" / "checkpoint.pth", tiny_coco(tmp_path_factory)


def _eval_path_detections(checkpoint, coco):
    """What main.py --eval computes for each val image: its model, val transform and PostProcess."""
    from datasets import build_dataset
    from main import build_model_main
    from util.checkpoint import load_checkpoint
    from util.run_config import args_for_checkpoint

    ckpt = load_checkpoint(str(checkpoint))
    args, _ = args_for_checkpoint(ckpt, str(checkpoint))
    args.coco_path = str(coco)
    model, _, post = build_model_main(args)
    model.load_state_dict(ckpt["model"])
    model.eval()
    dataset = build_dataset("val", args)
    out = {}
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            result = post["bbox"](model([image]), target["orig_size"][None])[0]
            name = dataset.coco.imgs[int(target["image_id"])]["file_name"]
            out[name] = result
    return out


def test_api_gives_the_eval_detections_for_every_input_type(trained):
    from detector import Detector
    checkpoint, coco = trained
    reference = _eval_path_detections(checkpoint, coco)
    detector = Detector.from_checkpoint(str(checkpoint), device="cpu")
    assert detector.category_names and "settings stored" in detector.settings_source
    val = coco / "val2017"
    names = sorted(reference)
    path = str(val / names[0])
    pil = Image.open(val / names[1]).convert("RGB")
    array = np.asarray(Image.open(val / names[2]).convert("RGB"))
    tensor = torch.from_numpy(np.array(Image.open(val / names[0]).convert("RGB"))).permute(2, 0, 1)
    results = detector([path, pil, array, tensor], threshold=0.0)
    assert len(results) == 4
    for result, name in zip(results, [names[0], names[1], names[2], names[0]]):
        ref = reference[name]
        order = torch.argsort(ref["scores"], descending=True)
        assert result.image_size == tuple(int(v) for v in Image.open(val / name).size[::-1])
        np.testing.assert_allclose(result.scores, ref["scores"][order].numpy(), atol=1e-5)
        w, h = result.image_size[1], result.image_size[0]
        ref_boxes = ref["boxes"][order].clone()
        ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(0, w)
        ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(0, h)
        np.testing.assert_allclose(result.boxes, ref_boxes.numpy(), atol=1e-3)
        assert result.labels.tolist() == ref["labels"][order].tolist()
        assert all(n == detector.category_names.get(int(c), str(int(c))) for n, c in zip(result.names, result.labels))
    single = detector(path, threshold=0.0)
    np.testing.assert_allclose(single.scores, results[0].scores)


def test_api_threshold_topk_nms_and_batches(trained):
    from detector import Detector
    checkpoint, coco = trained
    detector = Detector.from_checkpoint(str(checkpoint), device="cpu")
    images = sorted(str(p) for p in (coco / "val2017").iterdir())
    everything = detector(images[0], threshold=0.0)
    top = detector(images[0], threshold=0.0, topk=5)
    assert len(top) == 5 and np.allclose(top.scores, everything.scores[:5])
    strict = detector(images[0], threshold=float(everything.scores[3]))
    assert len(strict) >= 4 and (strict.scores >= everything.scores[3]).all()
    suppressed = detector(images[0], threshold=0.0, nms=0.5)
    assert 0 < len(suppressed) <= len(everything)
    from torchvision.ops import box_iou
    for label in set(suppressed.labels.tolist()):
        b = torch.from_numpy(suppressed.boxes[suppressed.labels == label])
        iou = box_iou(b, b) - torch.eye(len(b))
        assert (iou <= 0.5 + 1e-6).all()
    batched = detector(images, threshold=0.0, batch_size=3)  # different sizes, padded together
    assert [r.image_size for r in batched] == [r.image_size for r in detector(images, threshold=0.0)]


def test_fine_tuned_checkpoint_runs_with_no_config(trained, tmp_path):
    from tools import inference as inf
    checkpoint, coco = trained
    out = tmp_path / "out"
    code = inf.run_cli(["--checkpoint", str(checkpoint), "--images", str(coco / "val2017"), "--output_dir",
                        str(out), "--device", "cpu", "--quiet", "--threshold", "0"])
    assert code == 0
    import json
    data = json.loads((out / "detections.json").read_text())
    names = data["category_names"]
    assert set(names.values()) == {"circle", "square", "triangle"}  # recorded by main.py at training time
    pairs = [(label, name) for d in data["detections"] for label, name in zip(d["labels"], d["names"])]
    assert pairs and all(name == names.get(str(label), str(label)) for label, name in pairs)
    assert any(name in ("circle", "square", "triangle") for _, name in pairs)


# --------------------------------------------------------------------------- pretrained backbones
def test_backbone_weights_come_through_torchvision_cache(tmp_path, monkeypatch):
    """No local file named: torchvision's own cache ($TORCH_HOME/hub/checkpoints) provides them."""
    from helpers import tiny_args
    from main import build_model_main
    from models.dino.backbones.pretrained import load_library_weights
    import torchvision
    reference = torchvision.models.resnet18(weights=None).state_dict()
    reference = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in reference.items()}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    args = tiny_args("backbone_pretrained=True")
    model, _, _ = build_model_main(args)  # building reads nothing
    body = model.backbone[0]
    assert not torch.equal(body.body.conv1.weight, reference["conv1.weight"])
    assert load_library_weights(model, args) == 1
    assert torch.equal(body.body.conv1.weight, reference["conv1.weight"])
    assert torch.equal(body.body.layer2[0].bn1.running_var, reference["layer2.0.bn1.running_var"])


def test_backbone_without_weights_stops_with_a_message(tmp_path, monkeypatch):
    from helpers import tiny_args
    from main import build_model_main
    from models.dino.backbones.pretrained import BackboneWeightsError, load_library_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    import torch.hub

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    args = tiny_args("backbone_pretrained=True")
    model, _, _ = build_model_main(args)
    with pytest.raises(BackboneWeightsError) as info:
        load_library_weights(model, args)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "pretrained_backbone_path" in message
    assert "backbone_pretrained=False" in message and "\n" not in message


def test_training_offline_without_backbone_file_exits_with_one_line(tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    proc = run(main_argv(coco, tmp_path / "out", options=["backbone_pretrained=True"]),
               TORCH_HOME=str(tmp_path / "torch_home"))
    assert proc.returncode == 2, describe(proc)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "resnet18-f37072fd.pth" in errors[0], describe(proc)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "checkpoint.pth").exists()


def test_demo_config_trains_from_scratch_without_weights(tmp_path_factory, tmp_path):
    """The demo's config says it trains the backbone from scratch: no file, no download, no stop."""
    import subprocess
    from test_train_pipeline import PYTHON, cli_env
    coco = tiny_coco(tmp_path_factory)
    argv = [PYTHON, "main.py", "-c", "config/DINO/DINO_demo.py", "--coco_path", str(coco), "--output_dir",
            str(tmp_path / "demo"), "--device", "cpu", "--num_workers", "0", "--options", "epochs=1",
            "hidden_dim=32", "dim_feedforward=32", "enc_layers=1", "dec_layers=1", "num_queries=20",
            "num_select=20", "batch_size=2", "data_aug_scales=[64]", "data_aug_max_size=96",
            "data_aug_scales2_resize=[64]", "data_aug_scales2_crop=[48,64]"]
    proc = subprocess.run(argv, cwd=REPO_PATH, env=cli_env(TORCH_HOME=str(tmp_path / "empty")),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, describe(proc)
    assert (tmp_path / "demo" / "checkpoint.pth").is_file()
    assert "random weights" not in proc.stderr + proc.stdout or "backbone_pretrained=False" in proc.stderr + proc.stdout


def test_timm_backbones_get_timm_weights(monkeypatch):
    """Swin / ConvNeXt without a local file: timm's published weights (pretrained=True), remapped."""
    import timm
    from helpers import tiny_args
    from models.dino.backbones.pretrained import load_library_weights
    from models.dino.backbones.registry import build_backbone_body
    asked = []
    real_create = timm.create_model

    def create(name, pretrained=False, **kwargs):  # timm's download, answered from a seeded model
        asked.append((name, pretrained))
        torch.manual_seed(1)
        return real_create(name.split(".")[0], pretrained=False, **kwargs)
    monkeypatch.setattr(timm, "create_model", create)
    args = tiny_args("backbone=convnext_tiny_22k", "backbone_pretrained=True", "return_interm_indices=[1,2,3]")
    body = build_backbone_body(args)
    assert asked == []  # building downloads nothing
    holder = torch.nn.Module()
    holder.body = body
    assert load_library_weights(holder, args) == 1
    assert asked == [("convnext_tiny.fb_in22k", True)]
    torch.manual_seed(1)
    reference = real_create("convnext_tiny", pretrained=False).state_dict()
    own = body.state_dict()
    matched = [k for k, v in own.items() if any(torch.equal(v, r) for r in reference.values() if r.shape == v.shape)]
    assert len(matched) >= len(own) - 8  # all but the detector's own output norms


def test_released_detrex_checkpoint_runs_with_its_config(tmp_path):
    """A detrex-layout file (no recorded settings): converted on load, labels are COCO's ids and names."""
    from test_detrex_checkpoints import CONFIG, TINY, tiny_detrex_checkpoint
    from detector import Detector
    from util.class_transfer import COCO_CATEGORIES
    from util.slconfig import ConfigError
    path = tmp_path / "dino_r50_4scale_12ep.pth"
    tiny_detrex_checkpoint(path, num_classes=80)
    with pytest.raises(ConfigError, match="config"):
        Detector.from_checkpoint(str(path), device="cpu")
    options = {k: v for k, v in (o.split("=", 1) for o in TINY)}
    detector = Detector.from_checkpoint(str(path), config=os.path.join(REPO, CONFIG), options=options, device="cpu")
    image = Image.new("RGB", (120, 90), (90, 140, 60))
    result = detector(image, threshold=0.0, topk=50)
    coco = dict(COCO_CATEGORIES)
    assert len(result) == 50 and set(result.labels.tolist()) <= set(coco)
    assert all(name == coco[int(c)] for name, c in zip(result.names, result.labels))


def test_amp_runs_bf16_where_the_cpu_has_it(trained):
    """--amp / amp=True: bfloat16 autocast on a CPU with native bfloat16, float32 elsewhere; same kind of result."""
    from detector import Detector
    from util.precision import autocast_dtype
    checkpoint, coco = trained
    image = sorted((coco / "val2017").iterdir())[0]
    plain = Detector.from_checkpoint(str(checkpoint), device="cpu")(str(image), threshold=0.0)
    mixed = Detector.from_checkpoint(str(checkpoint), device="cpu", amp=True)(str(image), threshold=0.0)
    assert len(mixed) == len(plain) and np.isfinite(mixed.boxes).all() and mixed.boxes.dtype == np.float32
    if autocast_dtype(torch.device("cpu"), True) is None:  # no native bfloat16: exactly float32
        np.testing.assert_allclose(mixed.scores, plain.scores, atol=1e-6)
    else:  # bfloat16 keeps about 3 significant digits
        assert abs(float(mixed.scores[0]) - float(plain.scores[0])) < 0.05
