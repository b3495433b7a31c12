"""Datasets read as exported (datasets/formats): each layout of the synthetic data gives the same
images and boxes as its COCO json; malformed files are one line naming the file (and line); class
counts 'auto'; --val_split; nothing is written into a dataset folder."""
from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest
import torch
from PIL import Image

from datasets import DatasetError, build_dataset
from datasets.formats import open_dataset
from datasets.run_data import prepare_run_data, record_run_data

LAYOUT_WORDS = {"coco": "COCO 2017 layout", "roboflow": "Roboflow", "cvat": "annotations/", "yolo": "YOLO",
                "voc": "Pascal VOC", "labelme": "LabelMe"}
AUG = dict(data_aug_scales=[64], data_aug_max_size=96, data_aug_scales2_resize=[64], data_aug_scales2_crop=[48, 64],
           data_aug_scale_overlap=None, fix_size=False, masks=False, dataset_file="coco", use_dn=True)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The synthetic dataset (6 train, 3 val images, 64-96 px, with an image without objects) in every layout."""
    from datasets.synthetic import generate_synthetic_coco
    from datasets.synthetic_layouts import LAYOUTS, write_layout
    root = tmp_path_factory.mktemp("layouts")
    generate_synthetic_coco(str(root / "coco"), num_train=6, num_val=3, min_size=64, max_size=96, empty_prob=0.2,
                            seed=3)
    box_areas(root / "coco")
    for layout in LAYOUTS[1:]:
        write_layout(str(root / "coco"), str(root / layout), layout)
    return root


def box_areas(coco_root) -> None:
    """The json's 'area' (the shapes' pixel counts) made the box area: YOLO, VOC and LabelMe have no area,
    so their COCO ground truth has box areas, and COCO's small / medium / large ranges then agree."""
    for split in ("train", "val"):
        path = coco_root / "annotations" / f"instances_{split}2017.json"
        data = json.loads(path.read_text())
        for ann in data["annotations"]:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        path.write_text(json.dumps(data))


def run_args(path, **kw) -> argparse.Namespace:
    args = dict(data=str(path), coco_path=None, num_classes="auto", dn_labelbook_size="auto", seed=42, output_dir="",
                val_split=None, eval=False, test=False, contiguous_category_ids=False, **AUG)
    args.update(kw)
    return argparse.Namespace(**args)


def _targets(args, data, split):
    ds = build_dataset(split, args, data)
    names = {c["id"]: c["name"] for c in ds.coco.dataset["categories"]}
    out = []
    for i in range(len(ds)):
        info = ds.coco.imgs[ds.ids[i]]
        t = ds.prepare_target(ds.ids[i], info["width"], info["height"])
        out.append((os.path.basename(info["file_name"]).split("_")[-1], t["boxes"],
                    [names[int(c)] for c in t["labels"]]))
    return out


@pytest.mark.parametrize("layout", list(LAYOUT_WORDS))
def test_each_layout_gives_the_boxes_of_the_coco_json(layouts, layout):
    """Same images in the same order, boxes equal to 1e-4 px, same class names; the format is named."""
    ref_args = run_args(layouts / "coco")
    ref = prepare_run_data(ref_args, training=True)
    args = run_args(layouts / layout)
    data = prepare_run_data(args, training=True)
    assert LAYOUT_WORDS[layout] in data.notes[0]
    for split in ("train", "val"):
        want, got = _targets(ref_args, ref, split), _targets(args, data, split)
        assert [w[0] for w in want] == [g[0] for g in got]
        for (_, wb, wl), (_, gb, gl) in zip(want, got):
            assert wl == gl and wb.shape == gb.shape
            assert torch.allclose(wb.double(), gb.double(), atol=1e-4, rtol=0)
    first = 0 if layout in ("yolo", "voc", "labelme") else 1  # those formats number classes from 0
    assert (args.num_classes, args.dn_labelbook_size) == (5 + first, 5 + first)
    assert any("set from the data" in n for n in data.notes)


def test_yolo_label_errors_name_the_file_and_line(layouts, tmp_path):
    root = tmp_path / "yolo"
    shutil.copytree(layouts / "yolo", root)
    label = root / "labels" / "train" / "000000000002.txt"
    good = label.read_text()
    for line, words in (("0 0.5 0.5 abc 0.1", "'abc' is not a number"), ("7 0.5 0.5 0.1 0.1", "class 7 is not in"),
                        ("1 0.5 0.5 0.1", "4 values"), ("1.5 0.5 0.5 0.1 0.1", "not a whole number")):
        label.write_text(good + line + "\n")
        with pytest.raises(DatasetError) as exc:
            open_dataset(str(root)).load("train")
        message = str(exc.value)
        assert "\n" not in message and f"{label}, line {good.count(chr(10)) + 1}" in message and words in message


def test_yolo_details(layouts, tmp_path):
    """Roboflow's ../train/images paths and {index: name}; a polygon line gives its box; an image without
    a .txt has no boxes; a label without image is noted; EXIF-rotated images are normalised by the size shown."""
    root = tmp_path / "yolo"
    shutil.copytree(layouts / "yolo", root)
    (root / "data.yaml").write_text("train: ../images/train\nval: ../images/val\nnames: {0: circle, 1: square, "
                                    "2: triangle, 3: cross, 4: star}\n")
    (root / "labels" / "train" / "000000000001.txt").write_text("2 0.1 0.2 0.5 0.2 0.3 0.6\n")
    (root / "labels" / "train" / "000000000002.txt").unlink()
    (root / "labels" / "train" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    img = Image.new("RGB", (40, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: shown as 20 x 40
    img.save(root / "images" / "train" / "rotated.jpg", exif=exif)
    (root / "labels" / "train" / "rotated.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    split = open_dataset(str(root)).load("train")
    anns = {img["file_name"].split("/")[-1]: [a for a in split.data["annotations"] if a["image_id"] == img["id"]]
            for img in split.data["images"]}
    w, h = [(i["width"], i["height"]) for i in split.data["images"] if i["file_name"].endswith("000000000001.jpg")][0]
    assert anns["000000000001.jpg"][0]["bbox"] == pytest.approx([0.1 * w, 0.2 * h, 0.4 * w, 0.4 * h])
    assert anns["000000000002.jpg"] == []
    assert anns["rotated.jpg"][0]["bbox"] == pytest.approx([5.0, 10.0, 10.0, 20.0])
    assert split.notes.orphan_labels.count == 1 and "stray.txt" in split.notes.orphan_labels.examples[0]
    assert open_dataset(str(root)).exif_transpose == "always"


def test_voc_and_labelme_errors_name_the_file(layouts, tmp_path):
    voc = tmp_path / "voc"
    shutil.copytree(layouts / "voc", voc)
    xml = voc / "Annotations" / "train_000000000002.xml"
    xml.write_text(xml.read_text().replace("</annotation>", "<object><name>star</name></object></annotation>"))
    with pytest.raises(DatasetError, match=r"train_000000000002.xml: object \d+ \(star\) has no <bndbox>"):
        open_dataset(str(voc)).load("train")
    xml.write_text("<annotation>\n  <filename>x.jpg</filename\n</annotation>\n")
    with pytest.raises(DatasetError, match=r"train_000000000002.xml, line 3, column \d+: not well-formed XML \(not well-formed \(invalid token\)\)"):
        open_dataset(str(voc)).load("train")
    labelme = tmp_path / "labelme"
    shutil.copytree(layouts / "labelme", labelme)
    doc = labelme / "train" / "000000000003.json"
    doc.write_text('{"shapes": [\n  {"label": "x",,}\n')
    with pytest.raises(DatasetError, match=r"000000000003.json is not valid JSON: .* line 2"):
        open_dataset(str(labelme)).load("train")
    doc.write_text(json.dumps({"shapes": [{"label": "star", "shape_type": "point", "points": [[1, 2]]},
                                          {"label": "", "shape_type": "rectangle", "points": [[1, 2], [3, 4]]}],
                               "imagePath": "000000000003.jpg"}))
    with pytest.raises(DatasetError, match=r"000000000003.json: shape 2 has no 'label'"):
        open_dataset(str(labelme)).load("train")


def test_labelme_shapes_and_class_list(layouts, tmp_path):
    """Points and lines are skipped and counted; polygons and circles give their boxes; labels.txt fixes
    the ids, and a label it does not list is an error naming both."""
    root = tmp_path / "labelme"
    shutil.copytree(layouts / "labelme", root)
    doc = root / "train" / "000000000001.json"
    data = json.loads(doc.read_text())
    data["shapes"] = [{"label": "star", "shape_type": "point", "points": [[1, 2]]},
                      {"label": "cross", "shape_type": "polygon", "points": [[4, 5], [20, 9], [8, 30]]},
                      {"label": "circle", "shape_type": "circle", "points": [[30, 30], [33, 34]]}]
    doc.write_text(json.dumps(data))
    split = open_dataset(str(root)).load("train")
    boxes = [(a["category_id"], a["bbox"]) for a in split.data["annotations"] if a["image_id"] == 1]
    assert boxes == [(3, [4.0, 5.0, 16.0, 25.0]), (0, [25.0, 25.0, 10.0, 10.0])]
    assert split.notes.skipped_shapes.count == 1
    (root / "labels.txt").write_text("__ignore__\ncircle\nsquare\n")
    with pytest.raises(DatasetError, match="which .*labels.txt does not list"):
        open_dataset(str(root)).load("train")


def test_cvat_default_subset_and_val_split(layouts, tmp_path):
    """CVAT's single 'default' subset is train; without a validation split training asks for --val_split;
    the split is deterministic by seed, written to the output folder, and read back from there."""
    root = tmp_path / "cvat"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(layouts / "cvat" / "annotations" / "instances_Train.json", root / "annotations" / "instances_default.json")
    shutil.copytree(layouts / "cvat" / "images" / "Train", root / "images" / "default")
    assert "CVAT" in open_dataset(str(root)).describe()
    with pytest.raises(DatasetError, match="has no validation split; pass --val_split 0.1"):
        prepare_run_data(run_args(root), training=True)
    out = tmp_path / "run"
    out.mkdir()
    a = prepare_run_data(run_args(root, val_split=0.34, output_dir=str(out)), training=True)
    b = prepare_run_data(run_args(root, val_split=0.34), training=True)
    c = prepare_run_data(run_args(root, val_split=0.34, seed=7), training=True)
    val = lambda d: sorted(i["file_name"] for i in d.splits["val"].data["images"])  # noqa: E731
    assert len(val(a)) == 2 and val(a) == val(b) and len(a.splits["train"].data["images"]) == 4
    assert val(c) != val(a)  # another seed, another split (these 6 images)
    record_run_data(a, str(out), lambda line: None)
    assert json.loads((out / "val_split.json").read_text())["val_images"] == val(a)
    again = prepare_run_data(run_args(root, val_split=0.34, seed=7, output_dir=str(out)), training=True)
    assert val(again) == val(a) and "read from val_split.json" in " ".join(again.notes)
    with pytest.raises(DatasetError, match="has its own validation split"):
        prepare_run_data(run_args(layouts / "yolo", val_split=0.1), training=True)
    from tools import convert_dataset  # the same split as main.py with the same seed
    assert convert_dataset.run([str(root), str(tmp_path / "json"), "--val_split", "0.34", "--seed", "42"]) == 0
    written = json.loads((tmp_path / "json" / "instances_val.json").read_text())
    assert sorted(i["file_name"] for i in written["images"]) == val(b)


def test_class_counts_auto_and_explicit(layouts):
    args = run_args(layouts / "coco", contiguous_category_ids=True)
    prepare_run_data(args, training=True)
    assert (args.num_classes, args.dn_labelbook_size) == (5, 5)
    args = run_args(layouts / "yolo", num_classes=9)
    prepare_run_data(args, training=True)
    assert (args.num_classes, args.dn_labelbook_size) == (9, 9)  # a number wins; 'auto' dn follows it
    args = run_args(layouts / "coco", num_classes=3, dn_labelbook_size=3)
    data = prepare_run_data(args, training=True)
    with pytest.raises(DatasetError, match="is not below num_classes=3. Set num_classes to at least 6"):
        build_dataset("train", args, data)


def test_options_accept_auto_or_a_number():
    from util.slconfig import ConfigError, SLConfig, check_options
    cfg = SLConfig({"num_classes": 80, "dn_labelbook_size": "auto"})
    assert check_options(cfg, {"num_classes": "auto", "dn_labelbook_size": 7}) == {"num_classes": "auto",
                                                                                   "dn_labelbook_size": 7}
    with pytest.raises(ConfigError, match="expected a whole number or auto"):
        check_options(cfg, {"num_classes": "five"})


def test_class_counts_from_a_checkpoint_for_a_config_left_auto():
    from util.run_config import class_counts_from_checkpoint
    args = argparse.Namespace(num_classes="auto", dn_labelbook_size="auto", label_enc_extra_row=True)
    class_counts_from_checkpoint(args, {"model": {"class_embed.0.weight": torch.zeros(7, 4),
                                                  "label_enc.weight": torch.zeros(9, 4)}})
    assert (args.num_classes, args.dn_labelbook_size) == (7, 8)
    args = argparse.Namespace(num_classes="auto", dn_labelbook_size=5)
    class_counts_from_checkpoint(args, {"model": {}, "args": {"num_classes": 4}})
    assert (args.num_classes, args.dn_labelbook_size) == (4, 5)


def _tree(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, files in os.walk(root) for f in files)


def test_convert_tool_and_nothing_written_into_the_dataset(layouts, tmp_path, capsys):
    """tools/convert_dataset.py: the COCO json of a YOLO dataset reads back (--data FILE.json) with the same
    boxes; DST inside SRC is refused; the dataset folders are unchanged by reading, converting and checking."""
    from tools import check_dataset, convert_dataset
    before = {layout: _tree(layouts / layout) for layout in LAYOUT_WORDS}
    assert convert_dataset.run([str(layouts / "yolo"), str(tmp_path / "json")]) == 0
    assert "images relative to" in capsys.readouterr().out
    data = json.loads((tmp_path / "json" / "instances_val.json").read_text())
    assert {"source", "line"}.isdisjoint(data["annotations"][0]) and data["annotations"][0]["area"] > 0
    back = run_args(tmp_path / "json" / "instances_val.json")
    yolo = run_args(layouts / "yolo", eval=True)
    b = _targets(back, None, "train")  # a lone json is one split, read as train
    y = _targets(yolo, prepare_run_data(yolo, training=False), "val")
    assert [t[0] for t in b] == [t[0] for t in y] and all(torch.equal(p[1], q[1]) for p, q in zip(b, y))
    assert convert_dataset.run([str(layouts / "yolo"), str(tmp_path / "json")]) == 2  # exists: --overwrite
    assert convert_dataset.run([str(layouts / "voc"), str(layouts / "voc" / "json")]) == 2
    assert "inside SRC" in capsys.readouterr().err
    for layout in LAYOUT_WORDS:
        assert check_dataset.run([str(layouts / layout), "--out", str(tmp_path / f"check_{layout}"), "--grid", "4"]) == 0
        for split in ("train", "val"):
            prepare_run_data(run_args(layouts / layout, output_dir=str(tmp_path / "o")), training=True)
    assert {layout: _tree(layouts / layout) for layout in LAYOUT_WORDS} == before


@pytest.mark.parametrize("layout", list(LAYOUT_WORDS))
def test_coco_evaluation_gives_the_same_ap_on_every_layout(layouts, layout):
    """The same detections (the val boxes moved a little, in falling score, plus false positives) get the
    same 12 COCO numbers against each layout's ground truth as against the COCO json."""
    from datasets.coco_eval import CocoEvaluator

    def stats(path):
        args = run_args(path, eval=True)
        ds = build_dataset("val", args, prepare_run_data(args, training=False))
        cat_of = {c["name"]: c["id"] for c in ds.coco.dataset["categories"]}
        name_of = {c["id"]: c["name"] for c in ref.coco.dataset["categories"]}
        evaluator = CocoEvaluator(ds.coco)
        for i, image_id in enumerate(ds.ids):
            info = ref.coco.imgs[ref.ids[i]]
            t = ref.prepare_target(ref.ids[i], info["width"], info["height"])
            shift = torch.tensor([[1.0, -1.0, 2.0, 1.0]]) * (torch.arange(len(t["boxes"]))[:, None] % 3)
            boxes = torch.cat([t["boxes"] + shift, torch.tensor([[0.0, 0.0, 12.0, 9.0]])])
            labels = [cat_of[name_of[int(c)]] for c in t["labels"]] + [cat_of["circle"]]
            scores = torch.linspace(0.9, 0.1, len(boxes))
            evaluator.update({image_id: {"boxes": boxes, "labels": torch.tensor(labels), "scores": scores}})
        evaluator.accumulate()
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        return torch.tensor(evaluator.coco_eval["bbox"].stats)

    ref_args = run_args(layouts / "coco", eval=True)
    ref = build_dataset("val", ref_args, prepare_run_data(ref_args, training=False))
    want, got = stats(layouts / "coco"), stats(layouts / layout)
    assert want[0] > 0.2 and torch.equal(want, got), (want, got)


def test_browse_dataset_reads_data(layouts, tmp_path, capsys):
    from tools import browse_dataset
    assert browse_dataset.run(["--data", str(layouts / "yolo"), "--split", "val", "--out", str(tmp_path / "b")]) == 0
    assert len(list((tmp_path / "b").rglob("*.png"))) == 3


def _doc_commands(module, script: str):
    import shlex
    text = module.__doc__.replace("\\\n", " ")
    return [shlex.split(line.strip())[2:] for line in text.splitlines() if line.strip().startswith(f"python {script}")]


def test_help_examples_of_convert_dataset_and_the_layout_generator_run_as_written(tmp_path, monkeypatch, capsys):
    """make_synthetic_coco's --layout example (the demo's own, 600 images, is left to scripts/demo.sh), then
    convert_dataset's examples on it and on a miniature of the demo's data/synthetic_shapes."""
    from datasets.synthetic import generate_synthetic_coco
    from tools import convert_dataset
    from tools import make_synthetic_coco
    generate_synthetic_coco(str(tmp_path / "data" / "synthetic_shapes"), num_train=2, num_val=1, min_size=64,
                            max_size=64, seed=0)
    monkeypatch.chdir(tmp_path)
    layout = [a for a in _doc_commands(make_synthetic_coco, "tools/make_synthetic_coco.py") if "--layout" in a]
    assert len(layout) == 1
    make_synthetic_coco.main(layout[0])
    assert open_dataset(str(tmp_path / "data" / "synthetic_yolo")).format == "yolo"
    examples = _doc_commands(convert_dataset, "tools/convert_dataset.py")
    assert len(examples) == 2 and all(convert_dataset.run(argv) == 0 for argv in examples)
    assert (tmp_path / "coco_json_yolo" / "instances_val.json").is_file()
