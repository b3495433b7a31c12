"""The detrex DINO configs (docs/MODEL_ZOO.md): one config per row of detrex's DINO and DINO-EVA
model-zoo tables, and one per DINO config detrex ships without a released checkpoint, named as
detrex names it, holding detrex's model settings; each builds, and the converter recognises every
backbone of those tables from a checkpoint's keys."""
import glob
import os

import pytest
import torch

from helpers import REPO, build_args

# the configs linked from detrex's DINO and DINO-EVA model-zoo tables
ZOO = [
    "dino_r50_4scale_12ep.py", "dino_r50_5scale_12ep.py", "dino_r50_4scale_12ep_300dn.py", "dino_r50_4scale_24ep.py",
    "dino_r101_4scale_12ep.py", "dino_swin_tiny_224_4scale_12ep.py", "dino_swin_small_224_4scale_12ep.py",
    "dino_swin_base_384_4scale_12ep.py", "dino_swin_large_224_4scale_12ep.py", "dino_swin_large_384_4scale_12ep.py",
    "dino_swin_large_384_5scale_12ep.py", "dino_swin_large_384_4scale_36ep.py", "dino_swin_large_384_5scale_36ep.py",
    "dino_focalnet_large_lrf_384_4scale_12ep.py", "dino_focalnet_large_lrf_384_4scale_36ep.py",
    "dino_focalnet_large_lrf_384_fl4_4scale_12ep.py", "dino_focalnet_large_lrf_384_fl4_5scale_12ep.py",
    "dino_vitdet_base_4scale_12ep.py", "dino_vitdet_base_4scale_50ep.py", "dino_vitdet_large_4scale_12ep.py",
    "dino_vitdet_large_4scale_50ep.py", "dino_convnext_tiny_384_4scale_12ep.py", "dino_convnext_small_384_4scale_12ep.py",
    "dino_convnext_base_384_4scale_12ep.py", "dino_convnext_large_384_4scale_12ep.py",
    "dino_internimage_tiny_4scale_12ep.py", "dino_internimage_small_4scale_12ep.py",
    "dino_internimage_base_4scale_12ep.py", "dino_internimage_large_4scale_12ep.py",
    "dino_eva_01_1280_4scale_12ep.py", "dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py",
    "dino_eva_02_vitdet_b_6attn_win32_1536_lrd0p7_4scale_12ep.py", "dino_eva_02_vitdet_l_4attn_1024_lrd0p8_4scale_12ep.py",
    "dino_eva_02_vitdet_l_8attn_1536_lrd0p8_4scale_12ep.py",
]
# detrex's other DINO configs (commit e244e6c), by their detrex path: the EVA-01 model the DINO-EVA README
# links (projects/dino, DETR-like augmentation), the better_hyper model of the hacked-trainer table and the
# EVA-02-L 1280 row, and the configs with no released checkpoint. Left out: projects/dino's
# dino-eva-01/dino_eva_01_1536_4scale_12ep.py (an empty file) and timm_example.py / torchvision_example.py
# (examples of wrapping timm / torchvision backbones whose relative import does not resolve in detrex).
MORE = {
    "dino_eva_01_4scale_12ep.py": "projects/dino/configs/dino-eva-01/",
    "dino_focal_tiny_lrf_fl3_4scale_12ep.py": "projects/dino/configs/dino-focal/",
    "dino_focal_small_lrf_fl3_4scale_12ep.py": "projects/dino/configs/dino-focal/",
    "dino_focal_base_lrf_fl3_4scale_12ep.py": "projects/dino/configs/dino-focal/",
    "dino_focalnet_large_lrf_384_fl4_5scale_36ep.py": "projects/dino/configs/dino-focal/",
    "dino_r50_4scale_12ep_better_hyper.py": "projects/dino/configs/dino-resnet/",
    "dino_r50_4scale_12ep_no_frozen.py": "projects/dino/configs/dino-resnet/",
    "dino_eva_01_1536_4scale_12ep.py": "projects/dino_eva/configs/dino-eva-01/",
    "dino_eva_02_vitdet_l_4attn_1280_lrd0p8_4scale_12ep.py": "projects/dino_eva/configs/dino-eva-02/",
    "dino_eva_02_vitdet_l_8attn_win32_1536_lrd0p8_4scale_12ep.py": "projects/dino_eva/configs/dino-eva-02/",
}
ALL = ZOO + list(MORE)
CONFIGS = [os.path.join("config", "detrex", name) for name in ALL]
DN_300 = ("dino_r50_4scale_12ep_300dn.py", "dino_r50_4scale_12ep_better_hyper.py")


def from_dino_eva(config: str) -> bool:
    """Whether detrex's config is one of projects/dino_eva (square padding masked in eval) or projects/dino."""
    name = os.path.basename(config)
    return MORE[name].startswith("projects/dino_eva/") if name in MORE else name.startswith("dino_eva")


def test_every_zoo_config_exists_once_under_config():
    for name in ALL:
        found = glob.glob(os.path.join(REPO, "config", "**", name), recursive=True)
        assert len(found) == 1, f"{name}: {found}"


@pytest.mark.parametrize("config", CONFIGS)
def test_config_holds_detrex_model_settings(config):
    from models.dino.backbones.registry import get_layout_remap
    args = build_args(config)
    assert args.num_classes == 80 and args.contiguous_category_ids and args.dn_labelbook_size == 80
    assert not args.label_enc_extra_row and args.enc_heads_in_decoder_list and args.postprocess_clip_boxes
    assert not args.dec_pred_class_embed_share and not args.dec_pred_bbox_embed_share
    assert args.num_select == 300 and args.clip_max_norm == 0.1 and args.lr == 1e-4
    assert args.num_feature_levels == (5 if "5scale" in config else 4)
    assert args.dn_number == (300 if os.path.basename(config) in DN_300 else 100)
    # detrex's sine embedding, except its R50 24-epoch model (the original's)
    expected_pe = (20, 0.0) if "24ep" in config else (10000, -0.5)
    assert (args.pe_temperatureH, args.pe_temperatureW, args.pe_offset) == (expected_pe[0],) * 2 + (expected_pe[1],)
    if from_dino_eva(config):  # projects/dino_eva: square padding, masked in eval
        assert args.pad_to_square == args.lsj_size and args.eval_mask_padding  # the LSJ square
    else:  # projects/dino: no square padding, all-False eval mask
        assert not getattr(args, "pad_to_square", 0) and not args.eval_mask_padding
    get_layout_remap("detrex", args.backbone)  # a detrex checkpoint of this backbone can be converted


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_detrex_heads(config):
    from main import build_model_main
    vit = "vitdet" in config or "dino_eva" in config  # EVA-01/02 of both projects
    args = build_args(config, ["vit_depth=1"] if vit else [])
    if vit:  # plain ViTs compute drop-path rates on real tensors: a one-block trunk on the CPU
        model = build_model_main(args)[0]
    else:
        with torch.device("meta"):
            model = build_model_main(args)[0]
    state = model.state_dict()
    assert state["label_enc.weight"].shape[0] == 80 and state["class_embed.6.weight"].shape[0] == 80
    assert model.transformer.enc_out_class_embed is model.class_embed[6]
    assert len(model.input_proj) == args.num_feature_levels


def _detrex_weight_dict(class_weight: float) -> dict:
    """detrex's criterion weights in this project's names (projects/dino/configs/models/dino_r50.py and
    dino_r50_4scale_12ep_better_hyper.py): matched / aux / encoder class terms `class_weight`, dn class 1."""
    base = {"loss_ce": class_weight, "loss_bbox": 5.0, "loss_giou": 2.0,
            "loss_ce_dn": 1.0, "loss_bbox_dn": 5.0, "loss_giou_dn": 2.0}
    weights = dict(base)
    for i in range(5):
        weights.update({f"{k}_{i}": v for k, v in base.items()})
    weights.update({f"{k}_interm": base[k] for k in ("loss_ce", "loss_bbox", "loss_giou")})
    return weights


@pytest.mark.parametrize("name, class_weight", [("dino_r50_4scale_12ep.py", 1.0),
                                                ("dino_r50_4scale_12ep_better_hyper.py", 2.0)])
def test_loss_weights_are_detrex(name, class_weight):
    from models.dino.dino import build_weight_dict
    args = build_args(os.path.join("config", "detrex", name))
    assert build_weight_dict(args) == _detrex_weight_dict(class_weight)
    assert args.set_cost_class == 2.0 and args.set_cost_bbox == 5.0 and args.set_cost_giou == 2.0


@pytest.mark.parametrize("name, frozen", [("dino_r50_4scale_12ep.py", {"body.conv1.weight"}),
                                          ("dino_r50_4scale_12ep_no_frozen.py", set()),
                                          ("dino_r50_4scale_12ep_better_hyper.py", set())])
def test_resnet_freezing_is_detrex(name, frozen):
    """detectron2's freeze_at=1 freezes the stem's convolution, freeze_at=-1 nothing (norms are FrozenBN)."""
    from models.dino.backbones.registry import build_backbone_body
    args = build_args(os.path.join("config", "detrex", name))
    with torch.device("meta"):
        body = build_backbone_body(args)
    assert {n for n, p in body.named_parameters() if not p.requires_grad} == frozen


@pytest.mark.parametrize("size, width, depths", [("tiny", 96, (2, 2, 6, 2)), ("small", 96, (2, 2, 18, 2)),
                                                 ("base", 128, (2, 2, 18, 2))])
def test_focalnet_fl3_is_detrex_local_focalnet(size, width, depths):
    """projects/dino/configs/dino-focal/focalnet.py: pre-norm, no layer scale, plain stride convs, 3 levels of 3."""
    from models.dino.backbones.registry import build_backbone_body
    args = build_args(f"config/detrex/dino_focal_{size}_lrf_fl3_4scale_12ep.py")
    with torch.device("meta"):
        body = build_backbone_body(args)
    assert body.num_channels == [2 * width, 4 * width, 8 * width] and body.strides == [8, 16, 32]
    assert tuple(len(stage.blocks) for stage in body.layers) == depths
    block = body.layers[2].blocks[0]
    assert not block.post_norm and block.gamma_1 == 1.0 and not block.modulation.normalize_modulator
    assert [m[0].kernel_size for m in block.modulation.focal_layers] == [(3, 3), (5, 5), (7, 7)]
    assert body.patch_embed.proj.kernel_size == (4, 4) and body.layers[0].downsample.proj.kernel_size == (2, 2)
    assert args.epochs == 12 and args.lr_drop == 11 and args.lr_backbone == 1e-5


def test_recipes_of_the_other_configs():
    args = build_args("config/detrex/dino_focalnet_large_lrf_384_fl4_5scale_36ep.py")
    assert (args.epochs, args.lr_drop, args.backbone_drop_path_rate, args.num_feature_levels) == (36, 30, 0.4, 5)
    eva01 = build_args("config/detrex/dino_eva_01_4scale_12ep.py")
    assert eva01.data_aug_type == "detr" and eva01.vit_pad_input is False and eva01.lr_layer_decay == 0.9
    eva01_1536 = build_args("config/detrex/dino_eva_01_1536_4scale_12ep.py")
    assert (eva01_1536.pad_to_square, eva01_1536.vit_img_size, eva01_1536.vit_rel_pos_interp) == (1536, 1280, "beit")
    l1280 = build_args("config/detrex/dino_eva_02_vitdet_l_4attn_1280_lrd0p8_4scale_12ep.py")
    assert (l1280.vit_img_size, l1280.lsj_size, l1280.vit_global_attn_indexes) == (1280, 1280, [5, 11, 17, 23])
    win32 = build_args("config/detrex/dino_eva_02_vitdet_l_8attn_win32_1536_lrd0p8_4scale_12ep.py")
    assert (win32.vit_window_size, win32.vit_drop_path_rate, win32.pad_to_square) == (32, 0.4, 1536)


def test_converter_recognises_every_detrex_backbone():
    """The backbone keys of detrex's modules (H2's recorded fixtures) name the right backbone."""
    from models.dino.checkpoint_layouts import infer_detrex_backbone
    paths = sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "detrex_backbones", "*.pt")))
    assert paths
    for path in paths:
        fixture = torch.load(path, map_location="cpu", weights_only=False)
        state = {"backbone." + k: torch.empty(tuple(shape), device="meta") for k, shape, _, _ in fixture["keys"]}
        assert infer_detrex_backbone(state) == fixture["args"]["backbone"], path
