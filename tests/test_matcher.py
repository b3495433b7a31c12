"""Hungarian matching on costs we can reason about by hand."""
import math

import torch

from models.dino.matcher import HungarianMatcher


def _logit(p):
    return math.log(p / (1 - p))


def test_matches_each_target_to_its_obvious_query():
    # query 0 sits on target 1, query 2 on target 0, query 1 is far from both
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.9, 0.05, 0.05], [0.3, 0.3, 0.2, 0.2]]])
    logits = torch.full((1, 3, 2), _logit(0.1))
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])}]
    (rows, cols), = HungarianMatcher(2.0, 5.0, 2.0)({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 2: 0}


def test_class_cost_decides_between_identical_boxes():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    logits = torch.tensor([[[_logit(0.9), _logit(0.05)], [_logit(0.05), _logit(0.9)]]])
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    (rows, cols), = HungarianMatcher(2.0, 5.0, 2.0)({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert rows.tolist() == [1] and cols.tolist() == [0]


def test_minimises_total_cost_not_greedy():
    # greedy on target 0 would take query 0 (cost 1) and leave query 1 for target 1 (cost 10): total 11;
    # the optimum is 0->1, 1->0 with total 2 + 2 = 4
    matcher = HungarianMatcher(1.0, 1.0, 1.0)
    costs = torch.tensor([[[1.0, 2.0], [2.0, 10.0]]])
    matcher.cost_matrix = lambda outputs, targets: costs
    targets = [{"labels": torch.tensor([0, 0]), "boxes": torch.zeros(2, 4)}]
    (rows, cols), = matcher({"pred_logits": torch.zeros(1, 2, 1), "pred_boxes": torch.zeros(1, 2, 4)}, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_image_without_targets_gets_empty_match_and_batch_keeps_order():
    outputs = {"pred_logits": torch.zeros(2, 4, 3), "pred_boxes": torch.rand(2, 4, 4) * 0.5 + 0.25}
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
               {"labels": torch.tensor([2, 1]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1], [0.4, 0.4, 0.2, 0.2]])}]
    indices = HungarianMatcher(2.0, 5.0, 2.0)(outputs, targets)
    assert len(indices[0][0]) == 0 and len(indices[0][1]) == 0
    assert sorted(indices[1][1].tolist()) == [0, 1]
    assert indices[1][0].dtype == torch.int64
