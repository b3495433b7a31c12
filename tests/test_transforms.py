"""Boxes follow flips, resizes and crops exactly; the COCO recipes produce the original sizes."""
import random
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import datasets.transforms as T


def _image(w=100, h=50):
    return Image.new("RGB", (w, h), (10, 20, 30))


def _target(boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    return {
        "boxes": boxes,
        "labels": torch.tensor(labels if labels is not None else list(range(1, n + 1)), dtype=torch.int64),
        "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "size": torch.tensor([0, 0]),
    }


def test_hflip_boxes():
    img = Image.new("RGB", (100, 50))
    img.putpixel((0, 0), (255, 0, 0))
    tgt = _target([[10, 5, 30, 25], [0, 0, 100, 50]])
    out, new = T.hflip(img, tgt)
    assert out.getpixel((99, 0)) == (255, 0, 0)
    assert torch.equal(new["boxes"], torch.tensor([[70., 5, 90, 25], [0, 0, 100, 50]]))
    assert torch.equal(tgt["boxes"], torch.tensor([[10., 5, 30, 25], [0, 0, 100, 50]]))  # input untouched


def test_random_flip_probability_extremes():
    img, tgt = _image(), _target([[10, 5, 30, 25]])
    _, kept = T.RandomHorizontalFlip(p=0.0)(img, tgt)
    _, flipped = T.RandomHorizontalFlip(p=1.0)(img, tgt)
    assert torch.equal(kept["boxes"], tgt["boxes"])
    assert torch.equal(flipped["boxes"], torch.tensor([[70., 5, 90, 25]]))


@pytest.mark.parametrize("wh, size, max_size, expected_hw", [
    ((640, 480), 800, 1333, (800, 1066)),      # int(800 * 640 / 480) = 1066
    ((480, 640), 800, 1333, (1066, 800)),
    ((1000, 200), 800, 1333, (267, 1335)),     # capped: round(1333 * 200 / 1000) = 267; long side 1335 (as original)
    ((800, 600), 600, None, (600, 800)),       # already the right size
    ((100, 50), 100, None, (100, 200)),
    ((333, 500), 800, 1333, (1201, 800)),      # int(800 * 500 / 333) = 1201
])
def test_size_with_aspect_ratio(wh, size, max_size, expected_hw):
    assert T.get_size_with_aspect_ratio(wh, size, max_size) == expected_hw


def test_resize_scales_boxes_and_area():
    img, tgt = _image(100, 50), _target([[10, 5, 30, 25]])
    out, new = T.resize(img, tgt, 100)  # shorter side 50 -> 100: factor 2
    assert out.size == (200, 100)
    assert torch.allclose(new["boxes"], torch.tensor([[20., 10, 60, 50]]))
    assert torch.allclose(new["area"], torch.tensor([1600.]))
    assert new["size"].tolist() == [100, 200]


def test_resize_explicit_wh_uses_actual_ratios():
    img, tgt = _image(100, 50), _target([[10, 5, 30, 25]])
    out, new = T.resize(img, tgt, (50, 100))  # (w, h)
    assert out.size == (50, 100)
    assert torch.allclose(new["boxes"], torch.tensor([[5., 10, 15, 50]]))
    assert new["size"].tolist() == [100, 50]


def test_crop_clips_and_drops_in_sync():
    img = _image(100, 100)
    tgt = _target([[0, 0, 30, 30], [25, 15, 35, 25], [80, 80, 90, 90], [50, 10, 70, 20]], labels=[1, 2, 3, 4])
    tgt["iscrowd"] = torch.tensor([0, 0, 0, 0])
    out, new = T.crop(img, tgt, (10, 20, 30, 40))  # top, left, height, width
    assert out.size == (40, 30)
    assert torch.equal(new["boxes"], torch.tensor([[0., 0, 10, 20], [5, 5, 15, 15], [30, 0, 40, 10]]))
    assert new["labels"].tolist() == [1, 2, 4]
    assert new["area"].tolist() == [200.0, 100.0, 100.0]
    assert new["iscrowd"].tolist() == [0, 0, 0]
    assert new["size"].tolist() == [30, 40]


def test_crop_everything_outside_gives_empty_target():
    _, new = T.crop(_image(100, 100), _target([[80, 80, 90, 90]]), (0, 0, 50, 50))
    assert new["boxes"].shape == (0, 4) and new["labels"].shape == (0,) and new["area"].shape == (0,)


def test_random_size_crop_region_and_boxes():
    img = _image(120, 80)
    tgt = _target([[0, 0, 120, 80]])
    for seed in range(20):
        random.seed(seed)
        torch.manual_seed(seed)
        out, new = T.RandomSizeCrop(30, 60)(img, tgt)
        w, h = out.size
        assert 30 <= w <= 60 and 30 <= h <= 60
        assert torch.equal(new["boxes"], torch.tensor([[0., 0, w, h]]))  # full-image box -> full crop


def test_random_size_crop_on_image_smaller_than_min():
    out, new = T.RandomSizeCrop(384, 600)(_image(100, 50), _target([[10, 5, 30, 25]]))
    assert out.size == (100, 50)
    assert torch.equal(new["boxes"], torch.tensor([[10., 5, 30, 25]]))


def test_random_select_extremes():
    a = lambda img, tgt: ("a", tgt)  # noqa: E731
    b = lambda img, tgt: ("b", tgt)  # noqa: E731
    assert T.RandomSelect(a, b, p=1.0)(None, None)[0] == "a"
    assert T.RandomSelect(a, b, p=0.0)(None, None)[0] == "b"


def test_normalize_boxes_to_relative_cxcywh():
    img, tgt = _image(100, 50), _target([[10, 5, 30, 25]])
    image, new = T.Compose([T.ToTensor(), T.Normalize()])(img, tgt)
    assert image.shape == (3, 50, 100) and image.dtype == torch.float32
    assert torch.allclose(new["boxes"], torch.tensor([[0.2, 0.3, 0.2, 0.4]]))
    expected_r = (10 / 255 - 0.485) / 0.229
    assert torch.allclose(image[0], torch.full((50, 100), expected_r), atol=1e-5)


def _args(**kw):
    base = dict(data_aug_scales=None, data_aug_max_size=None, data_aug_scales2_resize=None,
                data_aug_scales2_crop=None, data_aug_scale_overlap=None, fix_size=False)
    base.update(kw)
    return SimpleNamespace(**base)


def test_val_transform_sizes_match_original():
    img, tgt = _image(640, 480), _target([[64, 48, 320, 240]])
    image, new = T.make_coco_transforms("val", _args())(img, tgt)
    assert image.shape == (3, 800, 1066)
    assert new["size"].tolist() == [800, 1066]
    assert torch.allclose(new["boxes"], torch.tensor([[0.3, 0.3, 0.4, 0.4]]), atol=1e-3)


def test_scale_overlap_multiplies_sizes():
    params = T.AugParams.from_args(_args(data_aug_scale_overlap=0.5))
    assert params.scales[0] == 240 and params.scales[-1] == 400
    assert params.max_size == 666 and params.scales2_resize == (200, 250, 300) and params.scales2_crop == (192, 300)
    image, _ = T.make_coco_transforms("val", _args(data_aug_scale_overlap=0.5))(_image(640, 480), _target([]))
    assert image.shape == (3, 400, 533)


def test_train_transform_sizes_and_boxes():
    tf = T.make_coco_transforms("train", _args(data_aug_scales=[64, 80], data_aug_max_size=120,
                                               data_aug_scales2_resize=[60, 70], data_aug_scales2_crop=[40, 60]))
    img, tgt = _image(100, 50), _target([[10, 5, 30, 25], [60, 10, 90, 40]])
    random.seed(0)
    torch.manual_seed(0)
    for _ in range(30):
        image, new = tf(img, tgt)
        h, w = image.shape[-2:]
        assert new["size"].tolist() == [h, w]
        assert min(h, w) in (64, 80) or max(h, w) <= 121  # shorter side drawn from scales unless capped
        assert new["boxes"].shape[1] == 4 and len(new["boxes"]) == len(new["labels"]) == len(new["area"])
        assert (new["boxes"] >= 0).all() and (new["boxes"] <= 1).all()


def test_fix_size_train_transform():
    tf = T.make_coco_transforms("train", _args(fix_size=True))
    image, new = tf(_image(640, 480), _target([[64, 48, 320, 240]]))
    assert image.shape == (3, 800, 1333)
    assert new["size"].tolist() == [800, 1333]


def test_recipes_registry():
    with pytest.raises(ValueError, match="unknown data_aug_type 'no_such_recipe'.*detr"):
        T.make_coco_transforms("train", _args(data_aug_type="no_such_recipe"))
    with pytest.raises(ValueError, match="unknown image_set"):
        T.make_coco_transforms("bogus", _args())

    @T.register_transform_recipe("_test_identity")
    def identity(image_set, params, args):
        return T.normalize_to_tensor()

    try:
        image, _ = T.make_coco_transforms("train", _args(data_aug_type="_test_identity"))(_image(30, 20), _target([]))
        assert image.shape == (3, 20, 30)
    finally:
        del T.TRANSFORM_RECIPES["_test_identity"]


def test_pipelines_accept_no_target():
    tf = T.make_coco_transforms("val", _args())
    image, target = tf(_image(640, 480), None)
    assert image.shape == (3, 800, 1066) and target is None
    random.seed(0)
    torch.manual_seed(0)
    train = T.make_coco_transforms("train", _args(data_aug_scales=[64], data_aug_max_size=100,
                                                  data_aug_scales2_resize=[60], data_aug_scales2_crop=[40, 60]))
    for _ in range(10):
        image, target = train(_image(100, 50), None)
        assert image.shape[0] == 3 and target is None
