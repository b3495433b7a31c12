"""Large scale jitter (datasets/lsj.py): fixed-size outputs and batches, boxes that follow the image."""
import argparse
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from datasets.lsj import LargeScaleJitter, ResizeLongestSide, lsj_recipe
from datasets.transforms import TRANSFORM_RECIPES, make_coco_transforms
from util.misc import collate_fn

COLOURS = [(230, 30, 30), (30, 200, 30), (40, 40, 240), (240, 240, 30), (200, 40, 200)]


def painted_sample(h=300, w=420, seed=0):
    """An image with non-overlapping solid rectangles of distinct colours and the matching target."""
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    boxes = []
    cw, ch = w // 3, h // 2          # one rectangle per cell of a 3 x 2 grid
    for cell, colour in zip(rng.sample(range(6), len(COLOURS)), COLOURS):
        bw, bh = rng.randint(cw // 3, cw), rng.randint(ch // 3, ch)
        x0 = (cell % 3) * cw + rng.randint(0, cw - bw)
        y0 = (cell // 3) * ch + rng.randint(0, ch - bh)
        draw.rectangle([x0, y0, x0 + bw - 1, y0 + bh - 1], fill=colour)
        boxes.append([x0, y0, x0 + bw, y0 + bh])
    boxes = torch.tensor(boxes, dtype=torch.float32)
    target = {"boxes": boxes, "labels": torch.arange(1, len(COLOURS) + 1),
              "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
              "iscrowd": torch.zeros(len(COLOURS), dtype=torch.int64),
              "orig_size": torch.tensor([h, w]), "size": torch.tensor([h, w])}
    return img, target


def assert_boxes_follow_image(img, target):
    """Every kept box lies inside the image and its centre shows its own colour."""
    pixels = np.asarray(img)
    h, w = pixels.shape[:2]
    boxes, labels = target["boxes"], target["labels"]
    assert len(boxes) == len(labels) == len(target["area"]) == len(target["iscrowd"])
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    for box, label in zip(boxes.tolist(), labels.tolist()):
        if box[2] - box[0] < 6 or box[3] - box[1] < 6:
            continue      # too small after down-scaling to sample a clean pixel
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert np.abs(pixels[cy, cx].astype(int) - np.array(COLOURS[label - 1])).max() < 40, (box, label)


@pytest.mark.parametrize("seed", range(12))
def test_lsj_output_is_fixed_size_and_boxes_follow(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    img, target = painted_sample(seed=seed)
    out, t = LargeScaleJitter(256, 0.1, 2.0)(img, target)
    assert out.size == (256, 256) and t["size"].tolist() == [256, 256]
    assert_boxes_follow_image(out, t)
    # the padding is the mean colour, outside the resized image
    assert t["orig_size"].tolist() == [300, 420]


def test_lsj_scale_range_and_dropped_boxes():
    img, target = painted_sample()
    jitter = LargeScaleJitter(200, 0.1, 2.0)
    # the image (420 wide) is resized to fit in s * 200
    assert jitter.scaled_size((300, 420), 0.1) == (14, 20)
    assert jitter.scaled_size((300, 420), 2.0) == (286, 400)
    # at the largest scale the crop keeps about half of each side: boxes outside are dropped, none empty
    random.seed(3)
    torch.manual_seed(3)
    seen = set()
    for _ in range(20):
        out, t = LargeScaleJitter(64, 1.9, 2.0)(img, target)
        assert out.size == (64, 64)
        assert_boxes_follow_image(out, t)
        seen.add(len(t["boxes"]))
    assert min(seen) < len(COLOURS)


def test_lsj_without_padding_leaves_the_crop():
    random.seed(0)
    torch.manual_seed(0)
    img, target = painted_sample()
    out, t = LargeScaleJitter(256, 0.2, 0.3, pad=False)(img, target)
    assert out.size[0] <= 256 and out.size[1] <= 256 and max(out.size) < 256
    assert t["size"].tolist() == [out.size[1], out.size[0]]


def test_eval_resize_longest_side():
    img, target = painted_sample(300, 420)
    out, t = ResizeLongestSide(512)(img, target)
    assert out.size == (512, 366)
    assert torch.allclose(t["boxes"], target["boxes"] * 512 / 420, atol=1.0)


def test_recipe_batches_have_the_fixed_size():
    assert TRANSFORM_RECIPES["lsj"] is lsj_recipe
    args = argparse.Namespace(data_aug_type="lsj", lsj_size=128, lsj_min_scale=0.1, lsj_max_scale=2.0, lsj_pad=True)
    train = make_coco_transforms("train", args)
    random.seed(0)
    torch.manual_seed(0)
    batch = [train(*painted_sample(h, w, seed=i)) for i, (h, w) in enumerate([(300, 420), (500, 200), (90, 90)])]
    images, targets = collate_fn(batch)
    assert images.tensors.shape == (3, 3, 128, 128) and not images.mask.any()
    for t in targets:
        b = t["boxes"]        # normalized (cx, cy, w, h) of the 128 x 128 image
        assert ((b >= 0) & (b <= 1)).all()
    val = make_coco_transforms("val", args)
    image, t = val(*painted_sample(300, 420))
    assert image.shape == (3, 91, 128)
    overlap = make_coco_transforms("train", argparse.Namespace(data_aug_type="lsj", lsj_size=128,
                                                               data_aug_scale_overlap=0.5))
    assert overlap(*painted_sample())[0].shape == (3, 64, 64)
