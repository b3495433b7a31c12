"""main.py --data from every layout: one short epoch each, fine-tuned from a checkpoint with
--finetune_class_map auto, sees the same boxes and reaches the same loss and COCO AP as the same
data read from its COCO json. The json's category ids are made 0..K-1 first, the ids YOLO, VOC and
LabelMe give, so every format has the same label space ('auto': K classes), and their 'area' the box
area those formats give (the AP of small / medium / large objects depends on it). After one epoch the
tiny model's AP is 0 everywhere; test_data_formats.py compares non-zero AP of fixed detections."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from test_train_pipeline import CONFIG, TINY_OPTIONS, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIONS = [o for o in TINY_OPTIONS if not o.startswith(("num_classes", "dn_labelbook_size", "use_ema", "ema_decay"))]


def main_run(data: Path, out: Path, *extra: str) -> dict:
    """One run of main.py in this process; returns the last line of its log.txt."""
    from main import get_args_parser, run_cli
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--data", str(data), "--output_dir", str(out), "--num_workers", "0",
                              "--device", "cpu", "--print_freq", "100", *extra])
    assert run_cli(args) == 0, (out / "info.txt").read_text()[-3000:]
    return json.loads((out / "log.txt").read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from datasets.synthetic import generate_synthetic_coco
    from datasets.synthetic_layouts import LAYOUTS, write_layout
    root = tmp_path_factory.mktemp("train_layouts")
    generate_synthetic_coco(str(root / "coco"), num_train=4, num_val=3, num_classes=3, min_size=64, max_size=96,
                            max_objects=3, seed=0)
    for split in ("train", "val"):  # ids 1..3 -> 0..2
        path = root / "coco" / "annotations" / f"instances_{split}2017.json"
        data = json.loads(path.read_text())
        for item in data["categories"]:
            item["id"] -= 1
        for item in data["annotations"]:
            item["category_id"] -= 1
            item["area"] = float(item["bbox"][2] * item["bbox"][3])  # box areas, as YOLO / VOC / LabelMe give
        path.write_text(json.dumps(data))
    for layout in LAYOUTS[1:]:
        write_layout(str(root / "coco"), str(root / layout), layout)
    pretrained = root / "pretrained"
    main_run(root / "coco", pretrained, "--options", "epochs=1", *OPTIONS)
    return root


@pytest.fixture(scope="module")
def reference(layouts):
    """The run every format must equal: the COCO json, fine-tuned one epoch."""
    return finetune(layouts, "coco")


def finetune(root: Path, layout: str) -> dict:
    out = root / f"run_{layout}"
    log = main_run(root / layout, out, "--pretrain_model_path", str(root / "pretrained" / "checkpoint.pth"),
                   "--finetune_class_map", "auto", "--options", "epochs=1", *OPTIONS)
    info = (out / "info.txt").read_text()
    from util.checkpoint import load_checkpoint
    saved = load_checkpoint(str(out / "checkpoint.pth"), "test")["args"]
    return {"log": log, "info": info, "args": saved}


@pytest.mark.parametrize("layout", ["roboflow", "cvat", "yolo", "voc", "labelme"])
def test_one_epoch_from_each_layout_equals_the_coco_json(layouts, reference, layout):
    got = finetune(layouts, layout)
    assert "num_classes=3 dn_labelbook_size=3 set from the data (auto: largest category id 2 + 1)" in got["info"]
    assert "--finetune_class_map auto: 3 of 3 classes taken from" in got["info"]
    names = getattr(got["args"], "category_names", None) or got["args"]["category_names"]
    want = getattr(reference["args"], "category_names", None) or reference["args"]["category_names"]
    assert sorted(names.values()) == sorted(want.values()) == ["circle", "square", "triangle"]
    assert got["log"]["train_loss"] == pytest.approx(reference["log"]["train_loss"], rel=1e-6, abs=1e-7)
    ap, ap_ref = got["log"]["test_coco_eval_bbox"], reference["log"]["test_coco_eval_bbox"]
    assert torch.allclose(torch.tensor(ap), torch.tensor(ap_ref), atol=1e-6), (ap, ap_ref)
