"""Contrastive denoising: query layout and attention mask for uneven batches."""
import torch
from torch import nn

from models.dino.dn_components import (denoising_attention_mask, denoising_match_indices, num_denoising_groups,
                                       prepare_for_cdn, split_denoising_outputs)

from helpers import make_targets


def test_group_count_follows_original_rule():
    assert num_denoising_groups(100, 5) == 20        # 200 queries budget / (2 * 5)
    assert num_denoising_groups(100, 150) == 1       # never fewer than one group
    assert num_denoising_groups(3, 5) == 6           # small dn_number: 2 * dn_number groups
    assert num_denoising_groups(100, 0) == 1


def test_layout_for_batch_with_different_counts_and_an_empty_image():
    torch.manual_seed(0)
    targets = make_targets([2, 0, 3])
    label_enc = nn.Embedding(6, 8)
    labels, boxes, mask, meta = prepare_for_cdn(targets, dn_number=100, label_noise_ratio=0.0, box_noise_scale=0.0,
                                                num_queries=4, num_classes=5, hidden_dim=8, label_enc=label_enc)
    groups = 200 // (2 * 3)
    assert meta == {"pad_size": 2 * 3 * groups, "num_dn_group": groups}
    assert labels.shape == (3, meta["pad_size"], 8) and boxes.shape == (3, meta["pad_size"], 4)
    # image 0: objects at offsets 0, 1 of every half-group; offset 2 is padding (zeros)
    for g in range(groups):
        for half in (0, 1):
            base = g * 6 + half * 3
            assert torch.allclose(labels[0, base], label_enc.weight[targets[0]["labels"][0]])
            assert torch.allclose(boxes[0, base + 1].sigmoid(), targets[0]["boxes"][1], atol=1e-5)
            assert not labels[0, base + 2].any()
    # the empty image has only padding
    assert not labels[1].any() and not boxes[1].any()

    T = meta["pad_size"] + 4
    assert mask.shape == (T, T)
    pad = meta["pad_size"]
    assert mask[pad:, :pad].all() and not mask[pad:, pad:].any()      # matching queries never see dn queries
    assert not mask[:pad, pad:].any()                                  # dn queries see the matching queries
    for g in range(groups):
        rows = slice(6 * g, 6 * (g + 1))
        assert not mask[rows, rows].any()                             # a group sees itself
        others = torch.ones(pad, dtype=torch.bool)
        others[rows] = False
        assert mask[rows][:, :pad][:, others].all()                    # and no other group


def test_negatives_are_noisier_than_positives():
    torch.manual_seed(1)
    targets = make_targets([4, 4], seed=3)
    _, boxes, _, meta = prepare_for_cdn(targets, dn_number=100, label_noise_ratio=0.0, box_noise_scale=1.0,
                                        num_queries=4, num_classes=5, hidden_dim=8, label_enc=nn.Embedding(6, 8))
    gt = targets[0]["boxes"]
    pos_err, neg_err = [], []
    for g in range(meta["num_dn_group"]):
        pos_err.append((boxes[0, 8 * g:8 * g + 4].sigmoid() - gt).abs().mean())
        neg_err.append((boxes[0, 8 * g + 4:8 * g + 8].sigmoid() - gt).abs().mean())
    assert torch.stack(neg_err).mean() > torch.stack(pos_err).mean()


def test_label_noise_flips_about_the_requested_share():
    torch.manual_seed(0)
    targets = [{"labels": torch.zeros(50, dtype=torch.int64), "boxes": torch.full((50, 4), 0.5)}]
    enc = nn.Embedding(101, 4)
    labels, _, _, meta = prepare_for_cdn(targets, 100, 0.5, 0.0, 4, 100, 4, enc)
    flipped = (labels[0] != enc.weight[0]).any(-1).float().mean()
    assert 0.15 < flipped < 0.35   # ratio / 2 = 25% drawn, a few redraw class 0


def test_split_outputs_and_match_indices():
    targets = make_targets([2, 1])
    meta = {"pad_size": 2 * 2 * 3, "num_dn_group": 3}
    logits = torch.randn(2, 2, meta["pad_size"] + 5, 4)
    coords = torch.rand(2, 2, meta["pad_size"] + 5, 4)
    l2, c2 = split_denoising_outputs(logits, coords, meta)
    assert l2.shape == (2, 2, 5, 4) and torch.equal(c2, coords[:, :, 12:])
    assert torch.equal(meta["output_known_lbs_bboxes"]["pred_logits"], logits[-1, :, :12])
    assert len(meta["output_known_lbs_bboxes"]["aux_outputs"]) == 1
    (q0, t0), (q1, t1) = denoising_match_indices(targets, meta)
    assert q0.tolist() == [0, 1, 4, 5, 8, 9] and t0.tolist() == [0, 1, 0, 1, 0, 1]
    assert q1.tolist() == [0, 4, 8] and t1.tolist() == [0, 0, 0]


def test_attention_mask_single_group():
    mask = denoising_attention_mask(1, 2, 3, torch.device("cpu"))
    assert mask.shape == (7, 7) and mask[4:, :4].all() and not mask[:4].any()
