"""detrex-layout checkpoints: converting them (tools/convert_checkpoint.py), refusing
what does not fit, evaluating one through main.py on a dataset with non-contiguous
category ids, fine-tuning from a converted one to another class count."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from detrex_layout_support import to_detrex_layout
from helpers import build_args
from helpers_coco import ann_entry, image_entry, write_split
from test_train_pipeline import describe, run

CONFIG = "config/detrex/dino_r50_4scale_12ep.py"
# the tiny DINO of the CLI tests in the detrex config (ResNet-18 cut after layer2: 2 neck convs + 2 extra convs)
TINY = ["backbone=resnet18", "return_interm_indices=[0,1]", "hidden_dim=32", "dim_feedforward=64", "enc_layers=1",
        "dec_layers=2", "num_queries=20", "dn_number=3", "nheads=2", "enc_n_points=2", "dec_n_points=2",
        "backbone_pretrained=False", "batch_size=2", "data_aug_scales=[64]", "data_aug_max_size=96",
        "data_aug_scales2_resize=[64]", "data_aug_scales2_crop=[48,64]"]
CATEGORY_IDS = [1, 7, 42]


def tiny_detrex_checkpoint(path: Path, num_classes: int) -> dict:
    """A detrex-layout checkpoint of the tiny model; returns this project's state dict it stands for."""
    from main import build_model_main
    args = build_args(CONFIG, TINY + [f"num_classes={num_classes}", f"dn_labelbook_size={num_classes}"])
    torch.manual_seed(0)
    state = build_model_main(args)[0].state_dict()
    torch.save({"model": to_detrex_layout(state, num_backbone_levels=2), "iteration": 89999}, path)
    return state


def convert(*argv: str):
    from tools.convert_checkpoint import main as convert_main
    return convert_main(list(argv))


@pytest.fixture(scope="module")
def detrex_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detrex_ckpt")
    state = tiny_detrex_checkpoint(folder / "detrex.pth", num_classes=len(CATEGORY_IDS))
    return folder / "detrex.pth", state


@pytest.fixture(scope="module")
def coco_1_7_42(tmp_path_factory) -> Path:
    """Train and val splits of 3 images (64-96 px) whose category ids are 1, 7 and 42."""
    root = tmp_path_factory.mktemp("coco_1_7_42")
    images = [image_entry(i, width=64 + 16 * i, height=80, ext="png") for i in (1, 2, 3)]
    anns = [ann_entry(10 * i + j, i, [4 + 10 * j, 6, 20, 24], CATEGORY_IDS[(i + j) % 3])
            for i in (1, 2, 3) for j in range(2)]
    cats = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in CATEGORY_IDS]
    for split in ("train", "val"):
        write_split(str(root), split, images, anns, categories=cats)
    return root


def test_converter_maps_every_tensor_back(detrex_ckpt, tmp_path, capsys):
    src, state = detrex_ckpt
    out = tmp_path / "converted.pth"
    assert convert(str(src), str(out), "-c", CONFIG, "--options", *TINY, "num_classes=3",
                   "dn_labelbook_size=3") == 0
    printed = capsys.readouterr().out
    assert "detrex layout" in printed and "input_proj.0-3" in printed
    converted = torch.load(out, weights_only=False)["model"]
    assert sorted(converted) == sorted(state)
    assert all(torch.equal(converted[k], state[k]) for k in state)


def test_converter_refuses_unknown_layout(tmp_path, capsys):
    src, out = tmp_path / "other.pth", tmp_path / "out.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2), "head.bias": torch.zeros(2)}}, src)
    assert convert(str(src), str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a DINO checkpoint of a known layout" in err[0]
    assert not out.exists()


def test_converter_refuses_checkpoint_of_other_shapes(detrex_ckpt, tmp_path, capsys):
    src, _ = detrex_ckpt
    out = tmp_path / "out.pth"
    assert convert(str(src), str(out), "-c", CONFIG, "--options", *TINY) == 1  # config: 80 classes, file: 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other shapes" in err[0] and "class_embed" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_eval_of_detrex_checkpoint_writes_dataset_category_ids(detrex_ckpt, coco_1_7_42, tmp_path):
    src, _ = detrex_ckpt
    argv = [os.sys.executable, "main.py", "-c", CONFIG, "--coco_path", str(coco_1_7_42), "--num_workers", "0",
            "--device", "cpu", "--output_dir", str(tmp_path / "eval"), "--eval", "--save_results",
            "--resume", str(src), "--options", *TINY, "num_classes=3", "dn_labelbook_size=3"]
    proc = run(argv)
    assert proc.returncode == 0, describe(proc)
    assert "converted on load" in proc.stdout + proc.stderr
    assert "Average Precision" in proc.stdout
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results and {r["category_id"] for r in results} == set(CATEGORY_IDS)


def test_finetune_from_converted_checkpoint_to_other_class_count(coco_1_7_42, tmp_path):
    """An 80-class (COCO) detrex checkpoint, converted, fine-tuned on the 3 categories 1, 7, 42."""
    src, converted = tmp_path / "detrex80.pth", tmp_path / "converted.pth"
    tiny_detrex_checkpoint(src, num_classes=80)
    assert convert(str(src), str(converted), "-c", CONFIG, "--options", *TINY) == 0
    out = tmp_path / "ft"
    argv = [os.sys.executable, "main.py", "-c", CONFIG, "--coco_path", str(coco_1_7_42), "--num_workers", "0",
            "--device", "cpu", "--output_dir", str(out), "--pretrain_model_path", str(converted),
            "--finetune_ignore", "class_embed", "label_enc",
            "--options", *TINY, "num_classes=3", "dn_labelbook_size=3", "epochs=1"]
    proc = run(argv)
    assert proc.returncode == 0, describe(proc)
    assert "keys matching --finetune_ignore" in proc.stdout + proc.stderr
    ckpt = torch.load(out / "checkpoint.pth", weights_only=False)
    assert ckpt["model"]["class_embed.0.weight"].shape[0] == 3
    saved = ckpt["args"] if isinstance(ckpt["args"], dict) else vars(ckpt["args"])
    assert saved["label_to_category_id"] == CATEGORY_IDS  # what inference maps labels 0..2 back with
    pre = torch.load(converted, weights_only=False)["model"]
    stem = "backbone.0.body.conv1.weight"  # frozen in detrex's recipe (freeze_at=1): still the converted weights
    assert torch.equal(ckpt["model"][stem], pre[stem])


def test_load_checkpoint_converts_detrex_layout_for_the_run(detrex_ckpt):
    """What --resume / --pretrain_model_path read: detrex keys become this project's, detectron2's
    other entries (iteration, optimizer) are dropped; without the run's args nothing is converted."""
    from models.dino.checkpoint_layouts import load_checkpoint_for
    from util.checkpoint import load_checkpoint
    src, state = detrex_ckpt
    args = build_args(CONFIG, TINY + ["num_classes=3", "dn_labelbook_size=3"])
    loaded = load_checkpoint_for(args, str(src), "--pretrain_model_path")
    assert set(loaded) == {"model"} and sorted(loaded["model"]) == sorted(state)
    assert "neck.convs.0.conv.weight" in load_checkpoint(str(src), "--pretrain_model_path")["model"]


def test_converter_copies_a_checkpoint_already_in_this_layout(detrex_ckpt, tmp_path, capsys):
    _, state = detrex_ckpt
    src, out = tmp_path / "ours.pth", tmp_path / "out.pth"
    torch.save({"model": state, "epoch": 3, "rng_state": None}, src)
    assert convert(str(src), str(out)) == 0
    assert "project layout" in capsys.readouterr().out
    copied = torch.load(out, weights_only=False)["model"]
    assert sorted(copied) == sorted(state) and all(torch.equal(copied[k], state[k]) for k in state)
    assert convert(str(src), str(src)) == 1  # never over its input


def test_converter_takes_detrex_ema_weights(detrex_ckpt, tmp_path):
    """detrex keeps its model EMA as `ema_state`, named as named_parameters() lists it (each head once,
    under transformer.decoder.*); --ema converts those weights."""
    src, state = detrex_ckpt
    detrex = torch.load(src, weights_only=False)["model"]
    ema = {k: v + 1 for k, v in detrex.items() if not k.startswith(("class_embed.", "bbox_embed."))}
    with_ema, out = tmp_path / "with_ema.pth", tmp_path / "out.pth"
    torch.save({"model": detrex, "ema_state": ema}, with_ema)
    assert convert(str(with_ema), str(out), "--ema", "-c", CONFIG, "--options", *TINY, "num_classes=3",
                   "dn_labelbook_size=3") == 0
    converted = torch.load(out, weights_only=False)["model"]
    assert sorted(converted) == sorted(state)
    assert all(torch.equal(converted[k], state[k] + 1) for k in state)
    assert convert(str(src), str(tmp_path / "none.pth"), "--ema") == 1  # no EMA weights in that file
