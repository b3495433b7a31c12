"""tools/check_dataset.py, the dataset doctor: a dataset with one problem of each kind, each reported
once with its count; format-specific problems; exit status; report.json and the picture; --help examples."""
from __future__ import annotations

import json
import math
import os
import shutil

from PIL import Image

from helpers_coco import ann_entry, image_entry, write_image, write_split
from tools import check_dataset

COCO_KINDS = ("box_partly_outside", "box_outside", "box_zero_size", "box_not_finite", "annotation_ids",
              "size_mismatch", "duplicate_file_name", "unknown_category", "tiny_box", "extreme_aspect",
              "unknown_image", "crowd_box", "no_boxes", "missing_image", "unreadable_image", "duplicate_image_id")


def clinic(root: str) -> None:
    """COCO 2017 layout; train has one problem of each kind of COCO_KINDS, val none."""
    images = [image_entry(i) for i in range(1, 12)]
    images[7]["file_name"] = images[6]["file_name"]          # 8: the file of 7 listed again
    images.append(dict(image_entry(11), file_name="other.jpg"))  # a second image with id 11
    anns = [ann_entry(1, 1, [4, 4, 10, 10]), ann_entry(2, 1, [50, 10, 20, 10]),   # partly outside
            ann_entry(3, 1, [0, 0, 8, 8], 2, iscrowd=1),
            ann_entry(4, 2, [70, 10, 5, 5]), ann_entry(5, 2, [5, 5, 10, 10], 9),   # outside; unknown category
            ann_entry(6, 3, [5, 5, 0, 10]), ann_entry(7, 3, [5, 5, 1, 10]), ann_entry(8, 3, [5, 5, 42, 2]),
            ann_entry(9, 4, [math.nan, 5, 10, 10]), ann_entry(10, 4, [5, 5, 10, 10]), ann_entry(10, 6, [5, 5, 9, 9]),
            ann_entry(12, 7, [5, 5, 9, 9]), ann_entry(13, 8, [5, 5, 9, 9]), ann_entry(14, 9, [5, 5, 9, 9]),
            ann_entry(15, 10, [5, 5, 9, 9]), ann_entry(16, 11, [5, 5, 9, 9]), ann_entry(17, 999, [5, 5, 9, 9])]
    write_split(root, "train", [img for img in images if img["id"] not in (9, 10)], [], write_images=True)
    folder = os.path.join(root, "train2017")
    write_image(os.path.join(folder, images[5]["file_name"]), 80, 48)            # 6: not the 64x48 the json says
    with open(os.path.join(folder, images[9]["file_name"]), "wb") as f:          # 10: not an image
        f.write(b"garbage")
    write_image(os.path.join(folder, "other.jpg"), 64, 48)
    with open(os.path.join(root, "annotations", "instances_train2017.json"), "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 5)]}, f)      # 9: no file at all
    val = [image_entry(1)]
    write_split(root, "val", val, [ann_entry(1, 1, [4, 4, 10, 10])])


def _check(capsys, *argv):
    code = check_dataset.run([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_problem_of_each_kind_is_reported_once_with_its_count(tmp_path, capsys):
    data = tmp_path / "clinic"
    clinic(str(data))
    code, out, err = _check(capsys, data, "--out", tmp_path / "report")
    assert code == 1, err  # missing / unreadable files and a duplicate image id: training would refuse
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    train = next(s for s in report["splits"] if s["split"] == "train")
    counts = {p["kind"]: p["count"] for p in train["problems"]}
    assert counts == {kind: 1 for kind in COCO_KINDS}, counts
    val = next(s for s in report["splits"] if s["split"] == "val")
    assert val["problems"] == [] and val["boxes"] == 1
    for kind in COCO_KINDS:  # once in the text, with its count and what the loader does
        from datasets.doctor import KINDS
        severity, what, handling = KINDS[kind]
        assert out.count(f"[{severity}] 1 {what}: {handling}") == 1, kind
    assert "training would REFUSE" in out and report["training_would_refuse"]
    assert {c["id"]: (c["images"], c["boxes"]) for c in train["classes"]}[1] == (9, 11)
    assert report["num_classes_needed"] == 10  # category id 9 is used
    grid = Image.open(tmp_path / "report" / "worst_offenders.png")
    assert grid.width == 4 * 256 and grid.height >= 256


def test_settings_and_label_space(tmp_path, capsys):
    from datasets.synthetic import generate_synthetic_coco
    data = tmp_path / "shapes"
    generate_synthetic_coco(str(data), num_train=3, num_val=2, min_size=64, max_size=64, seed=0)
    code, out, _ = _check(capsys, data, "--out", tmp_path / "a")
    assert code == 0 and "auto (the default) gives 6 (largest category id 5 + 1)" in out
    assert "training would accept this data" in out
    code, out, _ = _check(capsys, data, "--out", tmp_path / "b", "--options", "num_classes=4")
    assert code == 1 and "is not below num_classes=4. Set num_classes to at least 6" in out
    code, out, _ = _check(capsys, data, "--out", tmp_path / "c", "--options", "contiguous_category_ids=True",
                          "num_classes=5", "dn_labelbook_size=5")
    assert code == 0 and "need 5 (5 categories, contiguous_category_ids)" in out
    code, _, err = _check(capsys, data, "--out", data / "report")
    assert code == 2 and "inside the dataset" in err and not (data / "report").exists()
    code, _, err = _check(capsys, data, "--out", tmp_path / "a")
    assert code == 2 and "--overwrite" in err


def test_format_specific_problems(tmp_path, capsys):
    """YOLO: a label file without image is noted, a malformed line refused naming file and line; LabelMe: a
    shape that is not a box is noted; a folder without a dataset says what was looked for."""
    from datasets.synthetic import generate_synthetic_coco
    from datasets.synthetic_layouts import write_layout
    generate_synthetic_coco(str(tmp_path / "coco"), num_train=3, num_val=2, min_size=64, max_size=64, seed=0)
    write_layout(str(tmp_path / "coco"), str(tmp_path / "yolo"), "yolo")
    write_layout(str(tmp_path / "coco"), str(tmp_path / "labelme"), "labelme")
    (tmp_path / "yolo" / "labels" / "train" / "stray.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    code, out, _ = _check(capsys, tmp_path / "yolo", "--out", tmp_path / "r1", "--no-images")
    assert code == 0 and "[ignored] 1 label files without an image: ignored (e.g. labels/train/stray.txt)" in out
    label = tmp_path / "yolo" / "labels" / "val" / "000000000002.txt"
    label.write_text("0 0.5 0.5 0.2\n")
    code, out, _ = _check(capsys, tmp_path / "yolo", "--out", tmp_path / "r2")
    assert code == 1 and f"[refused] 1 a label file that cannot be read: training stops: fix the file named " \
                         f"(e.g. {label}, line 1: 4 values" in out
    doc = tmp_path / "labelme" / "train" / "000000000001.json"
    data = json.loads(doc.read_text())
    data["shapes"].append({"label": "star", "shape_type": "line", "points": [[1, 1], [5, 5]]})
    doc.write_text(json.dumps(data))
    code, out, _ = _check(capsys, tmp_path / "labelme", "--out", tmp_path / "r3")
    assert code == 0 and "[ignored] 1 shapes that are not boxes" in out and "train/000000000001.json shape" in out
    (tmp_path / "empty").mkdir()
    code, out, _ = _check(capsys, tmp_path / "empty", "--out", tmp_path / "r4")
    assert code == 1 and "no dataset found; looked for COCO json" in out


def test_help_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """The docstring's commands name the demo's data/synthetic_shapes: a miniature of it runs them."""
    import shlex
    from datasets.synthetic import generate_synthetic_coco
    generate_synthetic_coco(str(tmp_path / "data" / "synthetic_shapes"), num_train=2, num_val=1, min_size=64,
                            max_size=64, seed=0)
    monkeypatch.chdir(tmp_path)
    examples = [shlex.split(line.strip())[2:] for line in check_dataset.__doc__.splitlines()
                if line.strip().startswith("python tools/check_dataset.py")]
    assert len(examples) == 2
    for argv in examples:
        assert check_dataset.run(argv) == 0, argv
    assert (tmp_path / "check_synthetic_shapes" / "report.json").is_file()
    shutil.rmtree(tmp_path / "data")
