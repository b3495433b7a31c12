"""tools/browse_dataset.py: one picture per image with its ground-truth boxes, unique names,
never among the inputs."""
from __future__ import annotations

import os
import subprocess
import sys

from PIL import Image

from helpers import REPO
from helpers_coco import ann_entry, tiny_coco, write_split

PYTHON = sys.executable


def browse(*argv, in_process: bool = True):
    """tools/browse_dataset.py with these arguments (in this process unless asked: imports are slow)."""
    if not in_process:
        return subprocess.run([PYTHON, "tools/browse_dataset.py", *map(str, argv)], cwd=REPO, capture_output=True,
                              text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    import contextlib
    import io

    from tools import browse_dataset

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = browse_dataset.run([str(a) for a in argv])
    return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())


def _has_color_near(im: Image.Image, x: float, y: float, color, radius: int = 1) -> bool:
    px = im.load()
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            u, v = int(round(x)) + dx, int(round(y)) + dy
            if 0 <= u < im.width and 0 <= v < im.height and px[u, v] == color:
                return True
    return False


def _class_color(label: int, name: str):
    """The colour util.visualizer gives a class (keyed by name where it supports that)."""
    import inspect

    from util.visualizer import color_for_label
    if "name" in inspect.signature(color_for_label).parameters:
        return color_for_label(label, name)
    return color_for_label(label)


def test_one_png_per_image_with_the_boxes_drawn(tmp_path):
    root = tmp_path / "coco"
    data = tiny_coco(str(root))
    names = {i: f"c{i}" for i in range(1, 5)}  # helpers_coco's categories
    before = {p: p.read_bytes() for p in (root / "train2017").iterdir()}
    out = tmp_path / "browse"
    proc = browse("--coco_path", root, "--split", "train", "--out", out, in_process=False)  # as a person runs it
    assert proc.returncode == 0, proc.stderr
    pictures = sorted(os.listdir(out))
    assert pictures == sorted(im["file_name"] + ".png" for im in data["images"])
    for im_info in data["images"]:
        with Image.open(out / (im_info["file_name"] + ".png")) as im:
            im = im.convert("RGB")
            assert im.size == (im_info["width"], im_info["height"])
            boxes = [a for a in data["annotations"] if a["image_id"] == im_info["id"] and not a["iscrowd"]]
            for ann in boxes:  # the box's edges are in its class colour (a label may hide one)
                x, y, w, h = ann["bbox"]
                color = _class_color(ann["category_id"], names[ann["category_id"]])
                edges = [(x + w / 2, y), (x + w / 2, y + h), (x, y + h / 2), (x + w, y + h / 2)]
                assert sum(_has_color_near(im, ex, ey, color) for ex, ey in edges) >= 3, ann
            if not boxes:  # nothing drawn: the picture is the image itself
                with Image.open(root / "train2017" / im_info["file_name"]) as src:
                    assert list(im.getdata()) == list(src.convert("RGB").getdata())
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in os.listdir(out) if ".tmp-" in p]

    again = browse("--coco_path", root, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert browse("--coco_path", root, "--out", out, "--overwrite").returncode == 0


def test_same_stem_gives_two_pictures_and_images_folder_is_refused(tmp_path):
    root = tmp_path / "coco"
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
              {"id": 2, "file_name": "a.png", "width": 40, "height": 30}]
    anns = [ann_entry(1, 1, [2, 2, 20, 20], 1), ann_entry(2, 2, [5, 5, 10, 10], 2)]
    write_split(str(root), "train", images, anns)
    out = tmp_path / "pictures"
    proc = browse("--coco_path", root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["a.jpg.png", "a.png.png"]

    for bad in (root / "train2017", root / "train2017" / "sub"):
        proc = browse("--coco_path", root, "--out", bad)
        assert proc.returncode == 2 and "images folder" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(root / "train2017")) == ["a.jpg", "a.png"]


def test_augmented_pictures_follow_the_training_transform(tmp_path):
    root = tmp_path / "coco"
    data = tiny_coco(str(root))
    out = tmp_path / "aug"
    options = ["data_aug_scales=[96]", "data_aug_max_size=128", "data_aug_scales2_resize=[96]",
               "data_aug_scales2_crop=[32,48]"]
    proc = browse("--coco_path", root, "--out", out, "--augment", "--seed", "3", "--options", *options)
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(out)) == len(data["images"])
    sizes = []
    for name in sorted(os.listdir(out)):
        with Image.open(out / name) as im:
            sizes.append(im.size)
    assert all(min(s) == 96 or max(s) == 128 for s in sizes), sizes  # resized to the augmentation's scales
    # same seed, same pictures
    out2 = tmp_path / "aug2"
    assert browse("--coco_path", root, "--out", out2, "--augment", "--seed", "3", "--options", *options).returncode == 0
    assert all((out / n).read_bytes() == (out2 / n).read_bytes() for n in os.listdir(out))


def test_missing_dataset_is_reported_without_traceback(tmp_path):
    proc = browse("--coco_path", tmp_path / "nope", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: --coco_path {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "o").exists()
