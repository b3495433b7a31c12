"""Post-processing: top-k selection and box scaling to image pixels."""
import torch

from models.dino.postprocess import PostProcess


def test_boxes_are_scaled_to_each_image_size():
    logits = torch.full((2, 3, 2), -10.0)
    logits[0, 1, 0] = 5.0
    logits[1, 2, 1] = 4.0
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(2, 3, 1)
    results = PostProcess(num_select=1)({"pred_logits": logits, "pred_boxes": boxes},
                                        torch.tensor([[100, 200], [50, 80]]))   # (h, w)
    assert results[0]["labels"].tolist() == [0] and results[1]["labels"].tolist() == [1]
    assert torch.allclose(results[0]["boxes"], torch.tensor([[80.0, 30.0, 120.0, 70.0]]))
    assert torch.allclose(results[1]["boxes"], torch.tensor([[32.0, 15.0, 48.0, 35.0]]))
    assert torch.allclose(results[0]["scores"], torch.sigmoid(torch.tensor([5.0])))


def test_topk_runs_over_query_class_pairs_sorted_by_score():
    logits = torch.tensor([[[0.0, 3.0], [2.0, 1.0]]])
    boxes = torch.rand(1, 2, 4) * 0.5 + 0.2
    res, = PostProcess(num_select=3)({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[10, 10]]))
    assert res["labels"].tolist() == [1, 0, 1]
    assert (res["scores"][:-1] >= res["scores"][1:]).all()


def test_test_mode_gives_xywh_and_nms_removes_duplicates():
    logits = torch.tensor([[[3.0], [2.0], [1.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.21, 0.2], [0.1, 0.1, 0.1, 0.1]]])
    res, = PostProcess(num_select=3, nms_iou_threshold=0.5)({"pred_logits": logits, "pred_boxes": boxes},
                                                            torch.tensor([[100, 100]]))
    assert len(res["boxes"]) == 2
    res, = PostProcess(num_select=1)({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 100]]),
                                     test=True)
    assert torch.allclose(res["boxes"], torch.tensor([[40.0, 40.0, 20.0, 20.0]]))
