"""CocoEvaluator: perfect / empty / partial detections, results json, multi-process equality."""
import copy
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.coco import coco_from_dict
from datasets.coco_eval import CocoEvaluator, save_coco_results, to_coco_results


def _gt(num_images=6, seed=0):
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 150})
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 120), rng.uniform(0, 80)
            w, h = rng.uniform(8, 70), rng.uniform(8, 60)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "bbox": [150, 100, 40, 40],
                 "area": 1600.0, "iscrowd": 1})
    cats = [{"id": c, "name": str(c)} for c in (1, 2, 3)]
    return coco_from_dict({"images": images, "annotations": anns, "categories": cats})


def _perfect(coco):
    preds = {}
    for image_id in coco.getImgIds():
        gts = [a for a in coco.imgToAnns[image_id] if not a["iscrowd"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in gts], dtype=torch.float32).reshape(-1, 4)
        preds[image_id] = {"boxes": boxes, "scores": torch.linspace(0.9, 0.5, len(gts)),
                           "labels": torch.tensor([a["category_id"] for a in gts], dtype=torch.int64)}
    return preds


def _noisy(coco, seed=1):
    rng = np.random.default_rng(seed)
    preds = {}
    for image_id, p in _perfect(coco).items():
        n = len(p["boxes"])
        boxes = p["boxes"] + torch.tensor(rng.normal(0, 4, (n, 4)), dtype=torch.float32)
        extra = torch.tensor([[10, 10, 50, 60]], dtype=torch.float32)
        preds[image_id] = {"boxes": torch.cat([boxes, extra]),
                           "scores": torch.tensor(rng.uniform(0.1, 1, n + 1), dtype=torch.float32),
                           "labels": torch.cat([p["labels"], torch.tensor([2])])}
    return preds


def _run(coco, batches):
    ev = CocoEvaluator(coco, ("bbox",))
    for batch in batches:
        ev.update(batch)
    ev.synchronize_between_processes()
    ev.accumulate()
    ev.summarize()
    return ev


def test_perfect_detections_give_ap_one(capsys):
    coco = _gt()
    preds = _perfect(coco)
    ev = _run(coco, [{k: preds[k]} for k in preds])
    stats = ev.coco_eval["bbox"].stats
    assert len(stats) == 12
    assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0) and stats[8] == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "IoU metric: bbox" in out and out.count("Average Precision") == 6 and out.count("Average Recall") == 6


def test_no_detections_give_zero():
    coco = _gt()
    empty = {i: {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
             for i in coco.getImgIds()}
    ev = _run(coco, [empty])
    assert ev.coco_eval["bbox"].stats[0] == 0 and ev.coco_eval["bbox"].stats[8] == 0
    ev2 = _run(coco, [{i: {} for i in coco.getImgIds()}])  # empty dicts too
    assert ev2.coco_eval["bbox"].stats[0] == 0


def test_nothing_evaluated_does_not_crash():
    ev = _run(_gt(), [])
    assert ev.coco_eval["bbox"].stats.shape == (12,)


def test_matches_plain_pycocotools():
    coco = _gt(num_images=10)
    preds = _noisy(coco)
    ids = sorted(preds)
    ev = _run(coco, [{i: preds[i] for i in ids[:3]}, {i: preds[i] for i in ids[3:]}])

    ref = COCOeval(coco, coco.loadRes(to_coco_results(preds)), "bbox")
    ref.params.imgIds = ids
    ref.evaluate()
    ref.accumulate()
    ref.summarize()
    assert np.allclose(ev.coco_eval["bbox"].stats, ref.stats)
    assert 0 < ref.stats[0] < 1


def test_results_json(tmp_path):
    coco = _gt()
    preds = {1: {"boxes": torch.tensor([[10., 20, 40, 60]]), "scores": torch.tensor([0.5]),
                 "labels": torch.tensor([3])}, 2: {}}
    res = to_coco_results(preds)
    assert res == [{"image_id": 1, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5}]
    ev = CocoEvaluator(coco)
    ev.update(preds)
    ev.synchronize_between_processes()
    assert ev.coco_results() == res
    path = str(tmp_path / "r.json")
    save_coco_results(res, path)
    assert COCO.loadRes(coco, path).getAnnIds() == [1]


def test_unknown_image_id_is_rejected():
    with pytest.raises(ValueError, match="image id 999"):
        CocoEvaluator(_gt()).update({999: {}})


def test_ground_truth_id_zero_is_handled():
    coco = _gt()
    data = copy.deepcopy(coco.dataset)
    for a in data["annotations"]:
        a["id"] -= 1  # ids 0..N-1: pycocotools would count the match with id 0 as a miss
    coco0 = coco_from_dict(data)
    assert _run(coco0, [_perfect(coco0)]).coco_eval["bbox"].stats[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- #
# two processes (gloo) give exactly the single-process numbers
# --------------------------------------------------------------------------- #
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        coco = _gt(num_images=9)
        preds = _noisy(coco)
        ids = sorted(preds)
        # DistributedSampler style: interleaved, padded by repeating the first image
        mine = ids[rank::world] + ([ids[0]] if rank == world - 1 and len(ids) % world else [])
        ev = CocoEvaluator(coco)
        for i in mine:
            ev.update({i: preds[i]})
        ev.synchronize_between_processes()
        ev.accumulate()
        with open(os.devnull, "w") as devnull:
            import contextlib
            with contextlib.redirect_stdout(devnull):
                ev.summarize()
        with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
            json.dump({"stats": ev.coco_eval["bbox"].stats.tolist(), "n": len(ev.coco_results())}, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    world = 2
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True,
                       start_method="fork")
    coco = _gt(num_images=9)
    preds = _noisy(coco)
    single = _run(coco, [preds])
    for rank in range(world):
        with open(tmp_path / f"{rank}.json") as f:
            got = json.load(f)
        assert got["stats"] == single.coco_eval["bbox"].stats.tolist()
        assert got["n"] == len(single.coco_results())
