"""The detrex model zoo's configs (docs/MODEL_ZOO.md): one config per row of detrex's DINO and
DINO-EVA tables, named as detrex names it, holding detrex's model settings; each builds,
and the converter recognises every backbone of those tables from a checkpoint's keys."""
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
CONFIGS = [os.path.join("config", "detrex", name) for name in ZOO]


def test_every_zoo_config_exists_once_under_config():
    for name in ZOO:
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
    assert args.dn_number == (300 if "300dn" in config else 100)
    # detrex's sine embedding, except its R50 24-epoch model (the original's)
    expected_pe = (20, 0.0) if "24ep" in config else (10000, -0.5)
    assert (args.pe_temperatureH, args.pe_temperatureW, args.pe_offset) == (expected_pe[0],) * 2 + (expected_pe[1],)
    if "dino_eva" in config:  # projects/dino_eva: square padding, masked in eval
        assert args.pad_to_square == args.vit_img_size and args.eval_mask_padding
    else:  # projects/dino: no square padding, all-False eval mask
        assert not getattr(args, "pad_to_square", 0) and not args.eval_mask_padding
    get_layout_remap("detrex", args.backbone)  # a detrex checkpoint of this backbone can be converted


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_detrex_heads(config):
    from main import build_model_main
    vit = "vitdet" in config or "dino_eva" in config
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


def test_converter_recognises_every_detrex_backbone():
    """The backbone keys of detrex's modules (H2's recorded fixtures) name the right backbone."""
    from models.dino.checkpoint_layouts import infer_detrex_backbone
    paths = sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "detrex_backbones", "*.pt")))
    assert paths
    for path in paths:
        fixture = torch.load(path, map_location="cpu", weights_only=False)
        state = {"backbone." + k: torch.empty(tuple(shape), device="meta") for k, shape, _, _ in fixture["keys"]}
        assert infer_detrex_backbone(state) == fixture["args"]["backbone"], path
