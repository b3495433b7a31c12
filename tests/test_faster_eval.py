"""--evaluator faster (datasets/coco_eval_faster.py): the same numbers as pycocotools on the same detections."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from test_per_class_ap import NAMES, _ground_truth_and_detections

pytest.importorskip("faster_coco_eval")


def _predictions(dt, keep_images=None):
    preds = {}
    for a in dt.dataset["annotations"]:
        if keep_images is not None and a["image_id"] not in keep_images:
            continue
        p = preds.setdefault(a["image_id"], {"boxes": [], "scores": [], "labels": []})
        x, y, w, h = a["bbox"]
        p["boxes"].append([x, y, x + w, y + h])
        p["scores"].append(a["score"])
        p["labels"].append(a["category_id"])
    return {k: {n: np.asarray(v) for n, v in p.items()} for k, p in preds.items()}


def _run(cls, gt, batches):
    ev = cls(gt, ("bbox",))
    for batch in batches:
        ev.update(batch)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ev.accumulate()
        ev.summarize()
    return ev, out.getvalue()


@pytest.mark.parametrize("keep_images", [None, {1, 2, 5}, set()])
def test_same_12_numbers_and_precision_as_pycocotools(keep_images):
    from datasets.coco_eval import CocoEvaluator
    from datasets.coco_eval_faster import FasterCocoEvaluator
    from datasets.coco_per_class import per_class_ap

    gt, dt = _ground_truth_and_detections(seed=3)
    preds = _predictions(dt, keep_images)
    if keep_images == set():  # images that were run but got no detections
        preds = {1: {}, 2: {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}}
    ids = sorted(preds)
    batches = [{i: preds[i] for i in ids[k:k + 3]} for k in range(0, len(ids), 3)]  # like eval batches
    ref, ref_text = _run(CocoEvaluator, gt, batches)
    fast, fast_text = _run(FasterCocoEvaluator, gt, batches)
    ref_stats, fast_stats = ref.coco_eval["bbox"].stats, fast.coco_eval["bbox"].stats
    assert len(ref_stats) == 12
    np.testing.assert_allclose(fast_stats[:12], ref_stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.coco_eval["bbox"].eval["precision"], ref.coco_eval["bbox"].eval["precision"],
                               rtol=0, atol=1e-12)
    fast_pc, ref_pc = per_class_ap(fast.coco_eval["bbox"], NAMES), per_class_ap(ref.coco_eval["bbox"], NAMES)
    assert list(fast_pc) == list(ref_pc)
    for name, values in ref_pc.items():
        for metric, value in values.items():
            assert fast_pc[name][metric] == (None if value is None else pytest.approx(value, abs=1e-12))
    ap_line = [line for line in ref_text.splitlines() if line.startswith(" Average Precision")][0]
    assert ap_line in fast_text  # the same printed table
    if keep_images is None:
        assert ref_stats[0] > 0


def test_unknown_image_id_is_an_error():
    from datasets.coco_eval_faster import FasterCocoEvaluator

    gt, _ = _ground_truth_and_detections()
    with pytest.raises(ValueError, match="image id 999"):
        FasterCocoEvaluator(gt).update({999: {}})


def test_main_eval_with_faster_evaluator_gives_the_training_numbers(tmp_path_factory, tmp_path, capsys):
    """main.py --eval --evaluator faster on epoch 0's checkpoint: the 12 numbers and the per-class
    table of the training run's own (pycocotools) evaluation of the same weights."""
    import argparse

    import torch

    from main import get_args_parser, run_cli
    from test_train_pipeline import CONFIG, TINY_OPTIONS, read_log, stepwise_run, tiny_coco

    first = stepwise_run(tmp_path_factory) / "after_first"
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--coco_path", str(tiny_coco(tmp_path_factory)), "--output_dir",
                              str(tmp_path), "--device", "cpu", "--num_workers", "0", "--eval", "--evaluator",
                              "faster", "--resume", str(first / "checkpoint.pth"), "--options", *TINY_OPTIONS])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli(args) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    entry, trained = read_log(tmp_path / "log.txt")[-1], read_log(first / "log.txt")[0]
    assert entry["test_coco_eval_bbox"] == pytest.approx(trained["test_coco_eval_bbox"], abs=1e-12)
    for name, values in trained["test_coco_eval_per_class"].items():
        for metric, value in values.items():
            got = entry["test_coco_eval_per_class"][name][metric]
            assert got == (None if value is None else pytest.approx(value, abs=1e-12))
    assert "per-class AP / AP50 (%)" in capsys.readouterr().out
