"""Synthetic COCO generator: layout, JSON validity, boxes, determinism, flags."""
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from datasets.synthetic import SHAPE_NAMES, generate_synthetic_coco, make_categories, render_image  # noqa: E402

pycocotools_coco = pytest.importorskip("pycocotools.coco")


def _load(root, split):
    with open(os.path.join(root, "annotations", f"instances_{split}2017.json")) as f:
        return json.load(f)


def _digest(root):
    """Hash of every file under root (names + bytes)."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    summary = generate_synthetic_coco(root, num_train=24, num_val=8, num_classes=5,
                                      min_size=96, max_size=160, seed=3)
    return root, summary


def test_layout(dataset):
    root, summary = dataset
    assert sorted(os.listdir(root)) == [".synthetic_shapes.json", "annotations", "train2017", "val2017"]
    assert sorted(os.listdir(os.path.join(root, "annotations"))) == [
        "instances_train2017.json", "instances_val2017.json"]
    assert len(os.listdir(os.path.join(root, "train2017"))) == 24
    assert len(os.listdir(os.path.join(root, "val2017"))) == 8
    assert summary["splits"]["train"]["images"] == 24
    assert summary["splits"]["val"]["images"] == 8
    assert summary["root"] == os.path.abspath(root)


@pytest.mark.parametrize("split", ["train", "val"])
def test_json_is_valid_coco(dataset, split):
    root, summary = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco = pycocotools_coco.COCO(os.path.join(root, "annotations", f"instances_{split}2017.json"))
    data = _load(root, split)
    assert set(data) >= {"images", "annotations", "categories"}
    assert len(coco.getImgIds()) == len(data["images"])
    assert len(coco.getAnnIds()) == len(data["annotations"]) == summary["splits"][split]["annotations"]
    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
    img_ids = [i["id"] for i in data["images"]]
    assert len(set(img_ids)) == len(img_ids) and min(img_ids) >= 1
    for img in data["images"]:
        assert set(img) >= {"id", "file_name", "width", "height"}
        with Image.open(os.path.join(root, f"{split}2017", img["file_name"])) as im:
            assert im.mode == "RGB"
            assert im.size == (img["width"], img["height"])
            assert 96 <= im.size[0] <= 160 and 96 <= im.size[1] <= 160
    # images vary in size and aspect
    assert len({(i["width"], i["height"]) for i in data["images"]}) > 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_boxes_inside_images(dataset, split):
    root, _ = dataset
    data = _load(root, split)
    sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    assert data["annotations"], "expected some objects"
    for a in data["annotations"]:
        assert set(a) >= {"id", "image_id", "category_id", "bbox", "area", "iscrowd"}
        assert a["iscrowd"] == 0
        assert a["category_id"] in cat_ids
        x, y, w, h = a["bbox"]
        W, H = sizes[a["image_id"]]
        assert w > 0 and h > 0
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
        assert 0 < a["area"] <= w * h
        # objects are reasonably large: at least ~8 % of the shorter side
        assert max(w, h) >= 0.08 * min(W, H)


def test_categories(dataset):
    root, summary = dataset
    for split in ("train", "val"):
        data = _load(root, split)
        assert data["categories"] == make_categories(5)
        assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4, 5]
        assert [c["name"] for c in data["categories"]] == list(SHAPE_NAMES[:5])
        assert all(c["supercategory"] for c in data["categories"])
        assert data["info"]["num_classes"] == 6
        assert data["info"]["dn_labelbook_size"] >= 6
        assert data["info"]["category_names"] == list(SHAPE_NAMES[:5])
    assert summary["num_classes"] == 6
    assert summary["dn_labelbook_size"] >= summary["num_classes"]
    # all classes show up in a couple dozen images
    used = {a["category_id"] for a in _load(root, "train")["annotations"]}
    assert used == {1, 2, 3, 4, 5}


def test_colour_does_not_give_the_class(dataset):
    """The mean colour inside a box varies a lot within each class."""
    root, _ = dataset
    data = _load(root, "train")
    files = {i["id"]: i["file_name"] for i in data["images"]}
    by_class = {}
    for a in data["annotations"]:
        x, y, w, h = [int(round(v)) for v in a["bbox"]]
        arr = np.asarray(Image.open(os.path.join(root, "train2017", files[a["image_id"]])), dtype=np.float32)
        # centre patch of the box (inside the shape for all classes but the ring)
        patch = arr[y + h // 2 - 1:y + h // 2 + 2, x + w // 2 - 1:x + w // 2 + 2].reshape(-1, 3).mean(0)
        by_class.setdefault(a["category_id"], []).append(patch)
    for cls, cols in by_class.items():
        if len(cols) >= 3:
            assert np.stack(cols).std(0).mean() > 20, f"class {cls} has nearly constant colour"


def test_deterministic(tmp_path):
    kw = dict(num_train=6, num_val=3, num_classes=4, min_size=64, max_size=100, seed=11)
    a, b, c = (str(tmp_path / n) for n in "abc")
    generate_synthetic_coco(a, **kw)
    generate_synthetic_coco(b, **kw)
    generate_synthetic_coco(c, **{**kw, "seed": 12})
    assert _digest(a) == _digest(b)
    assert _load(a, "train") != _load(c, "train")
    # an image does not depend on how many images are generated
    d = str(tmp_path / "d")
    generate_synthetic_coco(d, **{**kw, "num_train": 3})
    for name in os.listdir(os.path.join(d, "train2017")):
        with open(os.path.join(a, "train2017", name), "rb") as f1, open(os.path.join(d, "train2017", name), "rb") as f2:
            assert f1.read() == f2.read()


def test_rerun_removes_stale_images(tmp_path):
    root = str(tmp_path)
    generate_synthetic_coco(root, num_train=5, num_val=2, min_size=64, max_size=64)
    generate_synthetic_coco(root, num_train=2, num_val=1, min_size=64, max_size=64, overwrite=True)
    assert len(os.listdir(os.path.join(root, "train2017"))) == 2
    assert len(os.listdir(os.path.join(root, "val2017"))) == 1


def test_empty_images_flag(tmp_path):
    # default: every image has an object
    root = str(tmp_path / "full")
    s = generate_synthetic_coco(root, num_train=20, num_val=2, min_size=64, max_size=96, seed=0)
    assert s["splits"]["train"]["empty_images"] == 0
    data = _load(root, "train")
    assert {a["image_id"] for a in data["annotations"]} == {i["id"] for i in data["images"]}
    # with empty_prob some images have no annotations, and they are still listed
    root = str(tmp_path / "empty")
    s = generate_synthetic_coco(root, num_train=20, num_val=2, min_size=64, max_size=96, seed=0, empty_prob=0.5)
    data = _load(root, "train")
    with_objects = {a["image_id"] for a in data["annotations"]}
    assert len(data["images"]) == 20
    assert 0 < s["splits"]["train"]["empty_images"] == 20 - len(with_objects) < 20
    # all images empty
    root = str(tmp_path / "none")
    s = generate_synthetic_coco(root, num_train=3, num_val=1, min_size=64, max_size=64, empty_prob=1.0)
    assert s["splits"]["train"]["annotations"] == 0 and _load(root, "train")["annotations"] == []


def test_object_count_and_size_flags(tmp_path):
    root = str(tmp_path)
    generate_synthetic_coco(root, num_train=10, num_val=1, image_size=128, min_objects=2, max_objects=3,
                            min_scale=0.25, max_scale=0.35, num_classes=6, image_format="png")
    data = _load(root, "train")
    assert all(i["width"] == 128 and i["height"] == 128 for i in data["images"])
    assert all(i["file_name"].endswith(".png") for i in data["images"])
    counts = np.bincount([a["image_id"] for a in data["annotations"]], minlength=11)[1:]
    assert counts.max() <= 3 and counts.min() >= 1 and counts.mean() >= 1.8
    for a in data["annotations"]:
        assert max(a["bbox"][2:]) <= 0.35 * 128 + 1
    assert [c["name"] for c in data["categories"]] == list(SHAPE_NAMES[:6])


def test_render_image_boxes_are_tight():
    rng = np.random.default_rng(0)
    img, objs = render_image(rng, 120, 90, 3, 6, max_distractors=0)
    assert img.size == (120, 90) and 1 <= len(objs) <= 3
    for o in objs:
        assert 1 <= o["category_id"] <= 6
        x, y, w, h = o["bbox"]
        assert o["area"] >= 0.2 * w * h  # the shape fills a good part of its box


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_categories(0)
    with pytest.raises(ValueError):
        make_categories(len(SHAPE_NAMES) + 1)
    with pytest.raises(ValueError):
        generate_synthetic_coco(str(tmp_path), 1, 1, min_objects=3, max_objects=2)
    with pytest.raises(ValueError):
        generate_synthetic_coco(str(tmp_path), 1, 1, min_size=100, max_size=50)


def test_cli(tmp_path):
    out = str(tmp_path / "cli")
    res = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_synthetic_coco.py"), "--out", out,
         "--num-train", "4", "--num-val", "2", "--min-size", "64", "--max-size", "80", "--classes", "4",
         "--seed", "1"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"--data {out}" in res.stdout and "set from the data" in res.stdout  # no class arithmetic to do
    assert "num_classes=" not in res.stdout
    assert len(_load(out, "train")["images"]) == 4
    assert len(_load(out, "val")["images"]) == 2


def test_never_writes_into_a_folder_it_did_not_write(tmp_path):
    """COCO's own files are named like the generator's (000000000139.jpg): a folder that holds a
    dataset the generator did not write is refused, even with overwrite; its own is replaced only
    with overwrite."""
    from datasets.synthetic import SyntheticDataError
    real = tmp_path / "coco"
    (real / "train2017").mkdir(parents=True)
    (real / "train2017" / "000000000139.jpg").write_bytes(b"a real photo")
    for overwrite in (False, True):
        with pytest.raises(SyntheticDataError, match="did not write"):
            generate_synthetic_coco(str(real), num_train=2, num_val=1, min_size=64, max_size=64, overwrite=overwrite)
    assert os.listdir(real / "train2017") == ["000000000139.jpg"]
    ours = str(tmp_path / "ours")
    generate_synthetic_coco(ours, num_train=2, num_val=1, min_size=64, max_size=64)
    with pytest.raises(SyntheticDataError, match="pass --overwrite"):
        generate_synthetic_coco(ours, num_train=2, num_val=1, min_size=64, max_size=64)

