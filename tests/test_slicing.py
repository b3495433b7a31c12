"""Sliced inference (issue 25): on a large synthetic image with small objects, tiles plus the
whole image find more of them than the whole image alone, and an object cut by a tile border
comes out as one box (box merging and NMS). The detector is a stand-in whose recall falls
with object size relative to its input (tests/stand_ins.BlobDetector: it shrinks its input to
400 pixels, as a real detector resizes to its input size); the real Detector's path is
checked for batching and coordinates; the SAHI adapter runs where sahi is installed."""
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stand_ins import BlobDetector  # noqa: E402
from util.slicing import SlicedDetector, parse_slice  # noqa: E402

pytest.importorskip("supervision")

TILE, OVERLAP = (400, 400), 0.25  # tiles start every 300 pixels: borders at x, y = 400, 700, 1000, ...


def large_image(seed: int = 0):
    """1600x1200, black, with 36 white squares of 8-11 px at random, 8 more straddling tile
    borders (x = 400 or y = 400, 700) and 3 of 150 px (two across borders); returns the image
    and the true boxes (xyxy)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((1200, 1600), np.uint8)
    boxes = []

    def place(x, y, size):
        if all(x > b[2] + 10 or x + size < b[0] - 10 or y > b[3] + 10 or y + size < b[1] - 10 for b in boxes):
            pixels[y:y + size, x:x + size] = 255
            boxes.append((x, y, x + size, y + size))

    for x, y, size in [(350, 100, 150), (900, 650, 150), (1300, 200, 150)]:
        place(x, y, size)
    for x, y in [(394, 520), (395, 880), (396, 1100), (700, 394), (1105, 395), (1450, 694), (150, 696), (1020, 1005)]:
        place(x, y, 12)  # across x = 400, y = 400, y = 700 or (1020, 1005) x = 1000/y = 1000 corners
    while len(boxes) < 47:
        place(int(rng.integers(0, 1580)), int(rng.integers(0, 1180)), int(rng.integers(8, 12)))
    return Image.fromarray(pixels).convert("RGB"), np.asarray(boxes, np.float32)


def iou(a, b) -> np.ndarray:
    """IoU of every box in a against every box in b."""
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def matched(found, truth, at: float = 0.5):
    """(true boxes found, detections that found one): greedy one-to-one matching at IoU >= at."""
    if len(found) == 0:
        return 0, 0
    overlaps, hits = iou(np.asarray(found), truth), 0
    while overlaps.size and overlaps.max() >= at:
        i, j = np.unravel_index(np.argmax(overlaps), overlaps.shape)
        overlaps[i, :], overlaps[:, j] = -1, -1
        hits += 1
    return hits, hits


def test_slicing_finds_small_objects_and_merges_border_boxes():
    image, truth = large_image()
    whole = BlobDetector()(image, threshold=0.3)
    stand_in = BlobDetector()
    sliced = SlicedDetector(stand_in, TILE, OVERLAP, merge="nmm", batch_size=4)
    found = sliced(image, threshold=0.3)
    recall_whole = matched(whole.boxes, truth)[0] / len(truth)
    hits, _ = matched(found.boxes, truth, at=0.7)
    raw = SlicedDetector(BlobDetector(), TILE, OVERLAP).tile_detections(image)
    print(f"\n{len(truth)} objects: recall {recall_whole:.2f} on the whole image, {hits / len(truth):.2f} sliced "
          f"({len(raw)} tile boxes merged into {len(found)}); forward passes of {stand_in.batches} images")
    assert recall_whole < 0.2 and hits == len(truth) == len(found)  # every object once, none twice
    assert len(raw) > len(truth) + 8  # the border objects came in pieces from two or more tiles
    tiles = math.ceil((1600 - 400) / 300 + 1) * math.ceil((1200 - 400) / 300 + 1)
    assert stand_in.batches == [4] * (tiles // 4) + [1]  # tiles in batches of 4, then the whole image


def test_nms_merge_keeps_the_whole_box_of_a_cut_object():
    image, truth = large_image()
    found = SlicedDetector(BlobDetector(), TILE, OVERLAP, merge="nms")(image, threshold=0.3)
    assert matched(found.boxes, truth, at=0.7)[0] == len(truth) == len(found)


def test_slice_settings_are_checked():
    assert parse_slice("640x480") == (640, 480) and parse_slice("512") == (512, 512)
    for bad in ("0x10", "axb", "10x10x10"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_slice(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SlicedDetector(BlobDetector(), TILE, overlap=1.0)
    with pytest.raises(ValueError, match="nmm"):
        SlicedDetector(BlobDetector(), TILE, merge="wbf")


def test_an_image_smaller_than_a_tile_is_one_pass():
    stand_in = BlobDetector()
    image, _ = large_image()
    small = image.crop((0, 0, 300, 200))
    SlicedDetector(stand_in, TILE)(small)
    assert stand_in.batches == [1]


def test_real_detector_sliced_batches_tiles_and_keeps_coordinates(tmp_path):
    """Detector.sliced with the tiny random DINO: tiles go through the model 4 at a time,
    every box lies in the image, top-k applies after merging."""
    import torch

    from detector import Detector
    from helpers import tiny_args
    from main import build_model_main

    torch.manual_seed(0)
    args = tiny_args("data_aug_scales=[96]", "data_aug_max_size=128")
    model, _, _ = build_model_main(args)
    torch.save({"model": model.state_dict(), "args": args}, tmp_path / "c.pth")
    detector = Detector.from_checkpoint(str(tmp_path / "c.pth"), device="cpu")
    calls = []
    real = detector._detect_batch
    detector._detect_batch = lambda pictures, *a: calls.append(len(pictures)) or real(pictures, *a)
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    result = detector.sliced(image, size="128x128", overlap=0.25, threshold=0.0, topk=30, batch_size=4)
    assert calls == [4, 2, 1]  # 3 x 2 tiles of 128 (starts 0, 96, 172 / 0, 72), then the whole image
    assert len(result) == 30 and result.image_size == (200, 300)
    assert (result.boxes[:, [0, 2]] <= 300).all() and (result.boxes[:, [1, 3]] <= 200).all()
    assert (result.boxes >= 0).all() and list(result.scores) == sorted(result.scores, reverse=True)


def test_sahi_adapter_runs_this_detector():
    """Where sahi is installed (it is optional): SAHI's sliced prediction over the stand-in
    through DinoSahiModel finds the small objects too."""
    pytest.importorskip("sahi")
    from sahi.predict import get_sliced_prediction

    from util.sahi_adapter import DinoSahiModel

    image, truth = large_image()
    stand_in = BlobDetector()
    model = DinoSahiModel(model=stand_in, confidence_threshold=0.3, device="cpu")
    result = get_sliced_prediction(np.asarray(image), model, slice_height=400, slice_width=400,
                                   overlap_height_ratio=0.25, overlap_width_ratio=0.25, verbose=0, batch_size=4)
    assert 4 in stand_in.batches  # SAHI's batches reach the detector as batches
    boxes = [p.bbox.to_xyxy() for p in result.object_prediction_list]
    assert {p.category.name for p in result.object_prediction_list} == {"square"}
    assert matched(np.asarray(boxes, np.float32), truth, at=0.7)[0] >= 0.95 * len(truth)
