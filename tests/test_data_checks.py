"""Every dataset problem that stops training has one message naming the file, the id and the fix."""
import json
import os
import shutil

import pytest
import torch

import datasets
from datasets import DatasetError, user_message, verify_images
from helpers_coco import ann_entry, image_entry, make_args, tiny_coco, write_split


def _build_error(args, image_set="train") -> str:
    with pytest.raises(DatasetError) as exc:
        datasets.build_dataset(image_set, args)
    return str(exc.value)


def _ann_path(root, split="train"):
    return os.path.join(root, "annotations", f"instances_{split}2017.json")


def _rewrite(root, fn, split="train"):
    path = _ann_path(root, split)
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


@pytest.fixture
def root(tmp_path):
    tiny_coco(str(tmp_path))
    return str(tmp_path)


def test_coco_path_missing(tmp_path):
    missing = str(tmp_path / "nope")
    msg = _build_error(make_args(missing))
    assert missing in msg and "does not exist" in msg and "instances_train2017.json" in msg


def test_images_folder_missing(root):
    shutil.rmtree(os.path.join(root, "train2017"))
    msg = _build_error(make_args(root))
    assert os.path.join(root, "train2017") in msg and "does not exist" in msg
    assert "Expected COCO layout" in msg and "<coco_path>/val2017" in msg


def test_annotation_file_missing(root):
    os.remove(_ann_path(root))
    msg = _build_error(make_args(root))
    assert _ann_path(root) in msg and "does not exist" in msg and "Expected COCO layout" in msg


def test_annotation_file_not_json(root):
    with open(_ann_path(root), "w") as f:
        f.write('{"images": [\n  {"id": 1,,}\n')
    msg = _build_error(make_args(root))
    assert _ann_path(root) in msg and "not valid JSON" in msg and "line 2" in msg


def test_annotation_file_empty(root):
    open(_ann_path(root), "w").close()
    msg = _build_error(make_args(root))
    assert "not valid JSON" in msg and "empty" in msg


def test_annotation_file_not_an_object(root):
    with open(_ann_path(root), "w") as f:
        json.dump([1, 2], f)
    assert "holds a JSON list" in _build_error(make_args(root))


def test_missing_top_level_key(root):
    _rewrite(root, lambda d: d.pop("annotations"))
    msg = _build_error(make_args(root))
    assert _ann_path(root) in msg and "no 'annotations' key" in msg


def test_annotation_missing_required_key(root):
    def drop(d):
        del d["annotations"][3]["bbox"]
        del d["annotations"][4]["category_id"]
    _rewrite(root, drop)
    msg = _build_error(make_args(root))
    assert _ann_path(root) in msg and "annotation 21 has no 'bbox'" in msg
    assert "2 annotations in the file lack required keys" in msg


def test_malformed_bbox(root):
    _rewrite(root, lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]))
    msg = _build_error(make_args(root))
    assert "annotation 11 (image 1) has bbox [1, 2, '3', 4]" in msg and "4 numbers" in msg


def test_image_entry_without_file_name(root):
    _rewrite(root, lambda d: d["images"][1].pop("file_name"))
    msg = _build_error(make_args(root))
    assert "image entry #1 has no 'file_name'" in msg


def test_duplicate_image_id(root):
    _rewrite(root, lambda d: d["images"][1].update(id=1))
    msg = _build_error(make_args(root))
    assert "image id 1 is used twice (000000000001.png and 000000000002.png)" in msg


def test_image_file_missing(root):
    os.remove(os.path.join(root, "train2017", "000000000003.png"))
    msg = _build_error(make_args(root))
    assert "1 of 4 images" in msg and "000000000003.png (image id 3)" in msg
    assert os.path.join(root, "train2017") in msg


def test_images_in_subfolders_are_found(tmp_path):
    root = str(tmp_path)
    img = dict(image_entry(1), file_name="sub/dir/a.jpg")
    write_split(root, "train", [img], [])
    assert len(datasets.build_dataset("train", make_args(root))) == 1


def test_category_id_not_below_num_classes(root):
    _rewrite(root, lambda d: d["annotations"][3].update(category_id=95))
    msg = _build_error(make_args(root, num_classes=91, dn_labelbook_size=91))
    assert ("category id 95 (annotation 21 in " + _ann_path(root) + ") is not below num_classes=91") in msg
    assert "Set num_classes to at least 96 and dn_labelbook_size to at least 96" in msg
    assert "--options num_classes=96 dn_labelbook_size=96" in msg


def test_category_id_check_suggests_only_what_is_needed(root):
    msg = _build_error(make_args(root, num_classes=4, dn_labelbook_size=100))
    assert "category id 4 (annotation 21" in msg and "--options num_classes=5." in msg
    assert "dn_labelbook_size to" not in msg


def test_dn_labelbook_smaller_than_num_classes(root):
    msg = _build_error(make_args(root, num_classes=5, dn_labelbook_size=3))
    assert "dn_labelbook_size=3 is smaller than num_classes=5" in msg and "--options dn_labelbook_size=5" in msg
    # without denoising the labelbook is unused
    assert len(datasets.build_dataset("train", make_args(root, num_classes=5, dn_labelbook_size=3, use_dn=False))) == 4


def test_negative_or_non_integer_category(root):
    _rewrite(root, lambda d: d["annotations"][0].update(category_id="person"))
    msg = _build_error(make_args(root))
    assert "annotation 11 (image 1) has category_id 'person'" in msg


def test_non_integer_image_id(root):
    _rewrite(root, lambda d: d["images"][0].update(id="abc"))
    assert "image 'abc' (000000000001.png) has a non-integer id" in _build_error(make_args(root))


def test_unknown_dataset_file_and_masks(root):
    assert "dataset_file 'o365' is not supported" in _build_error(make_args(root, dataset_file="o365"))
    assert "masks=True" in _build_error(make_args(root, masks=True))


def test_orphan_annotations_and_unknown_categories_warn(root, caplog):
    def add(d):
        d["annotations"].append(ann_entry(99, 1234, [1, 1, 5, 5], 1))
        d["categories"] = [c for c in d["categories"] if c["id"] != 4]
    _rewrite(root, add)
    ds = datasets.build_dataset("train", make_args(root))
    assert len(ds) == 4
    assert "annotation id -> image id: 99->1234" in caplog.text
    assert "annotation id -> category id: 21->4" in caplog.text


def test_corrupt_image_found_by_verify_images(root):
    bad = os.path.join(root, "train2017", "000000000002.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    ds = datasets.build_dataset("train", make_args(root))
    with pytest.raises(DatasetError) as exc:
        verify_images(ds)
    msg = str(exc.value)
    assert "1 image of 4" in msg and bad in msg and "(image id 2)" in msg
    problems = verify_images(torch.utils.data.Subset(ds, [1, 2]), raise_error=False)
    assert [p.image_id for p in problems] == [2]
    assert verify_images(torch.utils.data.Subset(ds, [0, 2, 3])) == []


def test_verify_images_reports_size_mismatch(root):
    _rewrite(root, lambda d: d["images"][0].update(width=100))
    ds = datasets.build_dataset("train", make_args(root))
    problems = verify_images(ds, raise_error=False)
    assert len(problems) == 1 and "64x48 but the annotation file says 100x48" in problems[0].reason


def test_error_from_dataloader_worker_keeps_its_message(root):
    bad = os.path.join(root, "train2017", "000000000002.png")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    ds = datasets.build_dataset("val", make_args(root))
    ds.img_folder = os.path.join(root, "train2017")
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, [1]), batch_size=1, num_workers=1,
                                         collate_fn=lambda b: b)
    batches = iter(loader)
    try:
        next(batches)
        raise AssertionError("expected a DatasetError")
    except DatasetError as exc:
        text = user_message(exc)
    finally:
        del batches
    assert text.startswith("image file " + bad) and "Original Traceback" not in text
    assert user_message(DatasetError("plain")) == "plain"
