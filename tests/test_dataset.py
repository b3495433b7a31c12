"""The COCO dataset: target format, crowd and empty images, image formats, EXIF."""
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets.coco import CocoDetection
from datasets.image_io import IMAGENET_MEAN_RGB, load_image, should_transpose, to_rgb
from helpers_coco import ann_entry, image_entry, make_args, tiny_coco, write_split
from util.misc import collate_fn


@pytest.fixture
def tiny(tmp_path):
    tiny_coco(str(tmp_path))
    return str(tmp_path)


def _by_id(ds):
    return {int(t["image_id"]): (img, t) for img, t in (ds[i] for i in range(len(ds)))}


def test_val_targets_format(tiny):
    ds = datasets.build_dataset("val", make_args(tiny))
    assert len(ds) == 4 and ds.ids == [1, 2, 3, 4]
    items = _by_id(ds)
    img, t = items[1]
    # 64x48 -> shorter side max(scales)=40: 40 x int(40 * 64 / 48) = 40 x 53
    assert img.shape == (3, 40, 53) and img.dtype == torch.float32
    assert set(t) == {"boxes", "labels", "image_id", "area", "iscrowd", "orig_size", "size"}
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert t["image_id"].tolist() == [1]
    assert t["orig_size"].tolist() == [48, 64] and t["size"].tolist() == [40, 53]
    assert t["labels"].tolist() == [1, 3]  # raw category ids; the crowd annotation is left out
    assert t["iscrowd"].tolist() == [0, 0]
    # json boxes [4, 6, 20, 10] and [30, 20, 24, 20] as relative cx, cy, w, h
    expected = torch.tensor([[14 / 64, 11 / 48, 20 / 64, 10 / 48], [42 / 64, 30 / 48, 24 / 64, 20 / 48]])
    assert torch.allclose(t["boxes"], expected, atol=1e-6)
    sx, sy = 53 / 64, 40 / 48
    assert torch.allclose(t["area"], torch.tensor([200 * sx * sy, 480 * sx * sy]))


def test_crowd_only_and_empty_images_are_kept_with_empty_targets(tiny):
    items = _by_id(datasets.build_dataset("train", make_args(tiny)))
    for image_id in (3, 4):
        _, t = items[image_id]
        assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and t["area"].shape == (0,)
        assert t["iscrowd"].shape == (0,)
    assert len(items[2][1]["labels"]) == 1


def test_train_loader_batches(tiny):
    ds = datasets.build_dataset("train", make_args(tiny))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_fn, num_workers=0)
    samples, targets = next(iter(loader))
    assert samples.tensors.shape[0] == 4 and len(targets) == 4
    for t in targets:
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 1)).all()


def test_coco_api_through_subsets(tiny):
    ds = datasets.build_dataset("val", make_args(tiny))
    nested = torch.utils.data.Subset(torch.utils.data.Subset(ds, [3, 2, 1]), [0, 2])
    coco = datasets.get_coco_api_from_dataset(nested)
    assert coco is ds.coco
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4] and len(coco.getAnnIds()) == 5  # crowd kept for evaluation


def test_test_split_falls_back_to_val(tiny):
    ds = datasets.build_dataset("test", make_args(tiny))
    assert ds.ann_file.endswith("instances_val2017.json") and len(ds) == 4


def test_test_dev_without_annotations(tmp_path):
    root = str(tmp_path)
    tiny_coco(root)
    os.makedirs(os.path.join(root, "test2017"))
    import json
    from helpers_coco import write_image
    write_image(os.path.join(root, "test2017", "a.jpg"), 40, 30)
    with open(os.path.join(root, "annotations", "image_info_test-dev2017.json"), "w") as f:
        json.dump({"images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}],
                   "categories": [{"id": 1, "name": "x"}]}, f)
    ds = datasets.build_dataset("test", make_args(root))
    img, t = ds[0]
    assert t["image_id"].tolist() == [7] and t["boxes"].shape == (0, 4)


def test_bad_boxes_clipped_or_dropped_with_one_warning(tmp_path, caplog):
    root = str(tmp_path)
    images = [image_entry(1), image_entry(2)]
    anns = [
        ann_entry(1, 1, [10, 10, 20, 20]),
        ann_entry(2, 1, [10, 10, 0, 5]),        # zero width: dropped
        ann_entry(3, 1, [10, 10, 5, -3]),       # negative height: dropped
        ann_entry(4, 1, [50, 30, 30, 30]),      # partly outside: clipped
        ann_entry(5, 1, [100, 100, 5, 5]),      # fully outside: dropped
        ann_entry(6, 2, [63.5, 0, 1, 10]),      # sticks out by half a pixel: clipped silently
        ann_entry(7, 2, [-5, -5, 10, 10], iscrowd=1),  # crowd: not a target, not counted
    ]
    write_split(root, "train", images, anns)
    with caplog.at_level(logging.WARNING):
        ds = datasets.build_dataset("train", make_args(root))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    msg = warnings[0]
    assert "instances_train2017.json" in msg
    assert "4 of 7 boxes" in msg
    assert "2 dropped for zero or negative width/height (annotation ids 2, 3)" in msg
    assert "1 dropped lying outside their image (annotation ids 5)" in msg
    assert "1 clipped to the image border (annotation ids 4)" in msg
    assert ds.report.clipped.count == 1 and ds.report.num_crowd == 1

    # targets before transforms: exact pixel boxes
    t1 = ds.prepare_target(1, 64, 48)
    assert t1["boxes"].tolist() == [[10, 10, 30, 30], [50, 30, 64, 48]]
    t2 = ds.prepare_target(2, 64, 48)
    assert t2["boxes"].tolist() == [[63.5, 0, 64, 10]]


def test_missing_area_and_iscrowd_and_zero_ids_are_filled(tmp_path, caplog):
    root = str(tmp_path)
    anns = [{"id": 0, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]},
            {"id": 0, "image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]}]
    write_split(root, "val", [image_entry(1)], anns)
    with caplog.at_level(logging.WARNING):
        ds = datasets.build_dataset("val", make_args(root))
    assert "renumbered" in caplog.text
    gt_anns = ds.coco.loadAnns(ds.coco.getAnnIds())
    assert sorted(a["id"] for a in gt_anns) == [1, 2]
    assert [a["area"] for a in gt_anns] == [200.0, 100.0] and [a["iscrowd"] for a in gt_anns] == [0, 0]


# --------------------------------------------------------------------------- #
# image formats
# --------------------------------------------------------------------------- #
def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(3, 0)
    path = str(tmp_path / "a.png")
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode == "I;16"
    img = load_image(path, 1)
    assert img.mode == "RGB" and img.size == (4, 3)
    assert np.asarray(img)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_int32_and_float_modes():
    i_img = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32))
    assert i_img.mode == "I"
    assert np.asarray(to_rgb(i_img))[0, :, 1].tolist() == [0, 4, 255]
    small = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert np.asarray(to_rgb(small))[0, :, 1].tolist() == [0, 100, 255]
    f_img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(f_img))[0, :, 2].tolist() == [0, 128, 255]


def test_grayscale_palette_rgba(tmp_path):
    grey = Image.fromarray(np.full((5, 6), 77, dtype=np.uint8))
    assert np.asarray(to_rgb(grey)).tolist()[0][0] == [77, 77, 77]
    pal = grey.convert("P")
    assert to_rgb(pal).mode == "RGB"
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)   # opaque: colour kept
    rgba[0, 1] = (200, 10, 10, 0)     # transparent: background
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [200, 10, 10]
    assert out[0, 1].tolist() == list(IMAGENET_MEAN_RGB)
    la = Image.fromarray(np.array([[[50, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_rgb(la))[0, 0].tolist() == [50, 50, 50]


def _exif_rotated(path, stored_wh, orientation):
    img = Image.new("RGB", stored_wh, (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())


def test_exif_transpose_rule(tmp_path):
    path = str(tmp_path / "rot.jpg")
    _exif_rotated(path, (40, 20), 6)  # stored 40x20, displayed 20x40
    assert load_image(path, 1, json_size=(20, 40)).size == (20, 40)   # json describes the displayed image
    assert load_image(path, 1, json_size=(40, 20)).size == (40, 20)   # json describes the stored pixels
    assert load_image(path, 1, json_size=None).size == (40, 20)       # unknown: stored, as the original
    assert load_image(path, 1, json_size=(40, 20), exif_transpose="always").size == (20, 40)
    assert not should_transpose(3, (40, 20), (40, 20))                # 180 degrees: cannot tell, keep
    assert not should_transpose(6, (30, 30), (30, 30))                # square: cannot tell, keep


def test_dataset_with_odd_image_formats(tmp_path):
    root = str(tmp_path)
    images = [image_entry(i, ext="png") for i in (1, 2, 3)] + [dict(image_entry(4, ext="jpg"), width=48, height=64)]
    write_split(root, "val", images, [ann_entry(1, 4, [4, 8, 10, 20])], write_images=False)
    folder = os.path.join(root, "val2017")
    Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16)).save(os.path.join(folder, images[0]["file_name"]))
    Image.new("L", (64, 48), 90).save(os.path.join(folder, images[1]["file_name"]))
    Image.new("RGBA", (64, 48), (1, 2, 3, 255)).save(os.path.join(folder, images[2]["file_name"]))
    _exif_rotated(os.path.join(folder, images[3]["file_name"]), (64, 48), 8)  # json has the rotated 48x64
    ds = datasets.build_dataset("val", make_args(root))
    for i in range(4):
        img, t = ds[i]
        assert img.shape[0] == 3
    assert ds[3][1]["orig_size"].tolist() == [64, 48]
    assert torch.allclose(ds[3][1]["boxes"], torch.tensor([[9 / 48, 18 / 64, 10 / 48, 20 / 64]]))


def test_corrupt_image_raises_at_load_time(tmp_path):
    root = str(tmp_path)
    write_split(root, "val", [image_entry(1), image_entry(2)], [])
    bad = os.path.join(root, "val2017", image_entry(2)["file_name"])
    with open(bad, "wb") as f:
        f.write(b"not a jpeg at all")
    ds = datasets.build_dataset("val", make_args(root))
    ds[0]
    with pytest.raises(datasets.DatasetError) as exc:
        ds[1]
    msg = str(exc.value)
    assert bad in msg and "image id 2" in msg and "cannot be decoded" in msg


def test_direct_construction(tiny):
    ds = CocoDetection(os.path.join(tiny, "val2017"), os.path.join(tiny, "annotations", "instances_val2017.json"))
    img, t = ds[0]
    assert img.size == (64, 48) and t["boxes"].tolist()[0] == [4, 6, 24, 16]
