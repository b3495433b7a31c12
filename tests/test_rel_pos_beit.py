"""BEiT-style resizing of relative-position tables (`vit_rel_pos_interp='beit'`, detrex's DINO-EVA-01 1536
config) and the two config options detrex's other DINO configs brought (models/dino/config_checks.py).

tests/fixtures/detrex_rel_pos/beit_rel_pos.pt holds tables resized by detrex's own
`get_rel_pos(q, q, table, "beit")` (detrex e244e6c, CPU): 80 -> 96 tokens a side (the EVA-01 1280 tables
on 1536 squares), 14 -> 20 and 80 -> 64."""
import copy
import os

import pytest
import torch

from helpers import build_args
from models.dino.backbones._rel_pos import beit_resize_rel_pos, run_block_with_beit_rel_pos

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "detrex_rel_pos", "beit_rel_pos.pt")


def test_beit_resize_matches_detrex():
    cases = torch.load(FIXTURE, weights_only=False)["cases"]
    assert len(cases) == 3
    for case in cases:
        ours = beit_resize_rel_pos(case["table"], 2 * case["grid"] - 1)
        ref = case["resized"]
        assert ours.shape == ref.shape and ours.dtype == torch.float32
        assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max(), case["grid"]


def test_beit_resize_keeps_a_table_of_the_right_length():
    table = torch.randn(31, 4)
    assert beit_resize_rel_pos(table, 31) is table


def _tiny_trunk(interp: str):
    pytest.importorskip("timm")
    from models.dino.backbones.vit_common import WindowedViT
    torch.manual_seed(0)
    net = WindowedViT(embed_dim=32, depth=2, num_heads=2, patch_size=16, pretrain_grid=4, window_sizes=[4, 0],
                      use_rel_pos=True, rel_pos_grid=6, rel_pos_interp=interp)
    with torch.no_grad():
        for block in net.blocks:
            block.attn.rel_pos_h.normal_(std=0.5)
            block.attn.rel_pos_w.normal_(std=0.5)
    return net.eval()


def test_global_block_runs_with_beit_resized_tables():
    """A global block on an 8 x 10 grid with 6-token tables: the same as the block holding the BEiT-resized
    tables itself (so timm never resizes them), and not what ViTDet's linear resize gives."""
    net = _tiny_trunk("beit")
    x = torch.randn(1, 8, 10, 32)
    block = net.blocks[1]
    with torch.no_grad():
        ours = net._run_block(1, block, x)
        explicit = copy.deepcopy(block)
        explicit.attn.rel_pos_h = torch.nn.Parameter(beit_resize_rel_pos(block.attn.rel_pos_h, 15))
        explicit.attn.rel_pos_w = torch.nn.Parameter(beit_resize_rel_pos(block.attn.rel_pos_w, 19))
        assert torch.allclose(ours, explicit(x), atol=1e-6)
        assert not torch.allclose(ours, block(x), atol=1e-4)  # linear (ViTDet) resizing differs
        assert torch.equal(run_block_with_beit_rel_pos(block, x), ours)
        window = net.blocks[0]
        assert torch.equal(net._run_block(0, window, x), window(x))  # window blocks: tables fit, nothing resized


def test_vitdet_interp_is_timms_own():
    net = _tiny_trunk("vitdet")
    x = torch.randn(1, 8, 10, 32)
    with torch.no_grad():
        assert torch.equal(net._run_block(1, net.blocks[1], x), net.blocks[1](x))


@pytest.mark.parametrize("option, message", [("vit_rel_pos_interp=bicubic", "vit_rel_pos_interp='bicubic'"),
                                             ("dn_cls_loss_coef=-1.0", "dn_cls_loss_coef=-1.0")])
def test_config_checks_refuse_bad_values(option, message):
    from models.dino.config_checks import UnsupportedConfigError, check_model_config
    args = build_args("config/detrex/dino_r50_4scale_12ep.py", [option])
    with pytest.raises(UnsupportedConfigError, match=message.replace("(", r"\(")):
        check_model_config(args)
