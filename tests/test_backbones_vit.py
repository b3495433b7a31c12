"""Plain-ViT backbones (EVA-02, EVA-01, ViTDet/MAE, DINOv2 + ViT-Adapter), their checkpoint loaders,
tools/convert_14to16.py, and every ViT config as a full DINO model at a tiny size.

Trunks are checked against timm's own models: the same random weights, saved in
a published key layout and read by our loader, must give the same token
features (the timm models are built without a class token so that both sides
attend over the same patch tokens).
"""
import argparse
import glob
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from models.dino.backbones import build_backbone_body
from models.dino.backbones.pretrained import load_pretrained
from models.dino.backbones.vit_common import PyramidBody, remap_vit_checkpoint

timm = pytest.importorskip("timm")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIT_CONFIGS = sorted(os.path.relpath(p, REPO) for pattern in ("config/DINO/dino_*.py", "config/detrex/dino_eva_*.py",
                                                                  "config/detrex/dino_vitdet_*.py")
                     for p in glob.glob(os.path.join(REPO, pattern)))


def _args(backbone, **kw):
    base = dict(backbone=backbone, return_interm_indices=[2], use_checkpoint=False, backbone_freeze_keywords=None)
    base.update(kw)
    return argparse.Namespace(**base)


def _randomize_1d(model: nn.Module, seed: int = 0) -> None:
    """Perturb biases / norms / layer scales so a loader that drops them cannot pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _timm_tokens(model, x):
    with torch.no_grad():
        return model.forward_intermediates(x, indices=[len(model.blocks) - 1], norm=False,
                                           intermediates_only=True, output_fmt="NCHW")[0]


def _load(body, state, tmp_path, name="ckpt.pth", **remap_kw):
    path = tmp_path / name
    torch.save(state, path)
    result = load_pretrained(body, str(path), lambda s, m: remap_vit_checkpoint(s, body.net, "net.", **remap_kw))
    trunk_missing = [k for k in result.missing_keys if k.startswith("net.")]
    return trunk_missing, list(result.unexpected_keys)


# --------------------------------------------------------------------------- #
# published layouts built from timm state dicts
# --------------------------------------------------------------------------- #
def eva02_official(sd):
    """timm eva02 -> EVA-02 official MIM layout (cls slot, q/v biases, w1/w2/ffn_ln/w3, extra keys)."""
    out = {"cls_token": torch.zeros(1, 1, sd["pos_embed"].shape[-1]), "mask_token": torch.zeros(1, 1, 3),
           "lm_head.weight": torch.zeros(2, 2), "norm.weight": torch.ones(3), "rope.freqs_cos": torch.ones(4, 4),
           "pos_embed": torch.cat([torch.zeros_like(sd["pos_embed"][:, :1]), sd["pos_embed"]], 1)}
    for k, v in sd.items():
        if k == "pos_embed":
            continue
        k = k.replace("attn.q_proj.bias", "attn.q_bias").replace("attn.v_proj.bias", "attn.v_bias")
        k = k.replace("mlp.fc1_g.", "mlp.w1.").replace("mlp.fc1_x.", "mlp.w2.").replace("mlp.norm.", "mlp.ffn_ln.")
        k = k.replace("mlp.fc2.", "mlp.w3.")
        if k.endswith("mlp.fc1.weight") or k.endswith("mlp.fc1.bias"):   # packed (tiny/small): split
            gate, up = v.chunk(2, 0)
            out[k.replace("fc1", "w1")], out[k.replace("fc1", "w2")] = gate, up
            continue
        out[k] = v
    return {"module": out}


def eva02_mmpretrain(sd):
    """timm eva02 (split q/k/v) -> mmpretrain layout (backbone.layers.N, fused qkv, w12, projection)."""
    out = {"backbone.cls_token": torch.zeros(1, 1, sd["pos_embed"].shape[-1]),
           "backbone.pos_embed": torch.cat([torch.zeros_like(sd["pos_embed"][:, :1]), sd["pos_embed"]], 1),
           "backbone.patch_embed.projection.weight": sd["patch_embed.proj.weight"],
           "backbone.patch_embed.projection.bias": sd["patch_embed.proj.bias"],
           "head.fc.weight": torch.zeros(5, 3)}
    depth = 1 + max(int(m.group(1)) for m in (re.match(r"blocks\.(\d+)\.", k) for k in sd) if m)
    for i in range(depth):
        b, o = f"blocks.{i}.", f"backbone.layers.{i}."
        q, k_, v = (sd[b + f"attn.{n}_proj.weight"] for n in "qkv")
        out[o + "attn.qkv.weight"] = torch.cat([q, k_, v])
        qb, vb = sd[b + "attn.q_proj.bias"], sd[b + "attn.v_proj.bias"]
        out[o + "attn.qkv.bias"] = torch.cat([qb, torch.zeros_like(qb), vb])
        out[o + "mlp.w12.weight"] = torch.cat([sd[b + "mlp.fc1_g.weight"], sd[b + "mlp.fc1_x.weight"]])
        out[o + "mlp.w12.bias"] = torch.cat([sd[b + "mlp.fc1_g.bias"], sd[b + "mlp.fc1_x.bias"]])
        for src, dst in [("norm1.", "norm1."), ("norm2.", "norm2."), ("attn.proj.", "attn.proj."),
                         ("mlp.norm.", "mlp.norm."), ("mlp.fc2.", "mlp.w3.")]:
            for kind in ("weight", "bias"):
                out[o + dst + kind] = sd[b + src + kind]
    return {"state_dict": out}


def dinov2_official(sd, chunked=False, adapter_names=False):
    """timm dinov2 (no class token) -> DINOv2 official layout (cls slot, mask_token, w12/w3 for g, norm)."""
    dim = sd["pos_embed"].shape[-1]
    giant = dim == 1536
    out = {"cls_token": torch.zeros(1, 1, dim), "mask_token": torch.zeros(1, dim),
           "pos_embed": torch.cat([torch.zeros_like(sd["pos_embed"][:, :1]), sd["pos_embed"]], 1),
           "norm.weight": torch.ones(dim)}
    for k, v in sd.items():
        if k == "pos_embed":
            continue
        m = re.match(r"blocks\.(\d+)\.(.*)", k)
        if m and "w12" not in k:
            rest = m.group(2)
            if giant:   # packed SwiGLU FFN
                rest = rest.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
            if adapter_names:
                rest = rest.replace("ls1.gamma", "gamma1").replace("ls2.gamma", "gamma2")
            k = f"blocks.0.{m.group(1)}.{rest}" if chunked else f"blocks.{m.group(1)}.{rest}"
        out[k] = v
    return out


# --------------------------------------------------------------------------- #
# EVA-02 / EVA-01 vs timm
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,timm_name", [("eva02_tiny", "eva02_tiny_patch14_224"),
                                            ("eva02_base", "eva02_base_patch14_224")])
def test_eva02_trunk_matches_timm_in_every_published_layout(name, timm_name, tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model(timm_name, pretrained=False, img_size=112, depth=2, class_token=False, num_classes=0)
    _randomize_1d(ref)
    ref.eval()
    x = torch.randn(2, 3, 112, 112)
    expected = _timm_tokens(ref, x)
    sd = ref.state_dict()
    # all-global trunk at the timm geometry: patch 14, 8x8 grid, RoPE on the 16x16 pre-training grid
    args = _args(name, vit_depth=2, vit_patch_size=14, vit_img_size=112, vit_pretrain_img_size=112,
                 vit_global_attn_indexes=[0, 1])
    packed = name in ("eva02_tiny", "eva02_small")
    layouts = {"timm": sd, "official": eva02_official(sd)}
    if not packed:
        layouts["mmpretrain"] = eva02_mmpretrain(sd)
    for layout, state in layouts.items():
        body = build_backbone_body(args)
        missing, unexpected = _load(body, state, tmp_path, f"{layout}.pth", swiglu_packed=packed)
        assert missing == [] and unexpected == [], (layout, missing, unexpected)
        body.eval()
        with torch.no_grad():
            got = body.net(x)
        diff = (got - expected).abs().max().item()
        print(f"{name} [{layout}] max |ours - timm| = {diff:.3g}")
        assert diff < 1e-4, (layout, diff)
    # window blocks: one window covering the grid is global attention; smaller windows change the result
    with torch.no_grad():
        body.net.window_sizes = [8, 8]
        assert torch.allclose(body.net(x), got, atol=1e-5)
        body.net.window_sizes = [3, 0]        # padded windows (8 -> 9)
        assert body.net(x).shape == got.shape


def test_eva02_builder_reads_pretrained_path_and_resamples_patch14(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=224, depth=2, class_token=False,
                            num_classes=0)
    path = tmp_path / "eva02_Ti_pt_in21k_p14.pt"
    torch.save(eva02_official(ref.state_dict()), path)
    body = build_backbone_body(_args("eva02_tiny", return_interm_indices=[1, 2, 3, 4], vit_depth=2,
                                     pretrained_backbone_path=str(path)))
    # the patch-14 kernel was resized to 16, the 16x16 grid to the 14x14 (224 px / 16) pre-training grid
    assert body.net.patch_embed.proj.weight.shape[-1] == 16 and body.net.pos_embed.shape[1] == 14 * 14
    assert torch.allclose(body.net.blocks[1].attn.q_bias, ref.blocks[1].attn.q_bias)
    outs = body(torch.randn(1, 3, 70, 100))
    assert [tuple(o.shape[-2:]) for o in outs] == [(9, 13), (5, 7), (3, 4), (2, 2)]
    assert body.strides == [8, 16, 32, 64] and body.num_channels == [256] * 4


def test_eva01_trunk_matches_timm_eva_giant_block(tmp_path):
    """EVA-01 official layout (fused qkv weight + q/v biases) into our windowed block with zero rel-pos."""
    torch.manual_seed(0)
    ref = timm.create_model("eva_giant_patch14_224", pretrained=False, img_size=112, depth=1, class_token=False,
                            num_classes=0)
    _randomize_1d(ref)
    ref.eval()
    x = torch.randn(1, 3, 112, 112)
    expected = _timm_tokens(ref, x)
    body = build_backbone_body(_args("eva01_giant", vit_depth=1, vit_patch_size=14, vit_img_size=112,
                                     vit_pretrain_img_size=112, vit_global_attn_indexes=[0]))
    state = {"model": {("backbone.net." + k): v for k, v in ref.state_dict().items()}}   # a detrex-style file
    missing, unexpected = _load(body, state, tmp_path)
    assert [k for k in missing if "rel_pos" not in k] == [] and unexpected == []
    body.eval()
    with torch.no_grad():
        diff = (body.net(x) - expected).abs().max().item()
    print(f"eva01_giant max |ours - timm| = {diff:.3g}")
    assert diff < 1e-4
    frozen = build_backbone_body(_args("eva01_giant", vit_depth=1))
    assert not frozen.net.patch_embed.proj.weight.requires_grad   # EVA-01 freezes the patch embedding


# --------------------------------------------------------------------------- #
# ViTDet (MAE) vs timm's ViTDet/SAM trunk
# --------------------------------------------------------------------------- #
def test_vitdet_trunk_matches_timm_windowed_vit_with_rel_pos(tmp_path):
    from functools import partial

    from timm.models.vision_transformer_sam import VisionTransformerSAM
    torch.manual_seed(0)
    ref = VisionTransformerSAM(img_size=128, patch_size=16, embed_dim=768, depth=2, num_heads=12, use_rel_pos=True,
                               window_size=3, global_attn_indexes=(1,), neck_chans=0, num_classes=0,
                               norm_layer=partial(nn.LayerNorm, eps=1e-6))
    _randomize_1d(ref)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "rel_pos" in n:
                p.normal_(0, 0.1)
    ref.eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = ref.blocks(ref.patch_embed(x) + ref.pos_embed).permute(0, 3, 1, 2)
    args = _args("vitdet_base", vit_depth=2, vit_window_size=3, vit_global_attn_indexes=[1], vit_img_size=128,
                 vit_pretrain_img_size=128)
    body = build_backbone_body(args)
    missing, unexpected = _load(body, ref.state_dict(), tmp_path)
    assert missing == [] and unexpected == []
    body.eval()
    with torch.no_grad():
        diff = (body.net(x) - expected).abs().max().item()
    print(f"vitdet_base (windows of 3 on an 8x8 grid, rel-pos) max |ours - timm| = {diff:.3g}")
    assert diff < 1e-4

    # the MAE file layout: class-token slot in pos_embed, no rel-pos tables (reported missing), heads ignored
    mae = {k: v for k, v in ref.state_dict().items() if "rel_pos" not in k}
    mae["pos_embed"] = torch.cat([torch.zeros(1, 1, 768), mae["pos_embed"].reshape(1, 64, 768)], 1)
    mae.update({"cls_token": torch.zeros(1, 1, 768), "norm.weight": torch.ones(768), "norm.bias": torch.zeros(768)})
    fresh = build_backbone_body(args)
    missing, unexpected = _load(fresh, {"model": mae}, tmp_path, "mae.pth")
    assert sorted(missing) == sorted(f"net.blocks.{i}.attn.rel_pos_{a}" for i in range(2) for a in "hw")
    assert unexpected == []
    assert torch.equal(fresh.net.pos_embed, ref.pos_embed.reshape(1, 64, 768))


def test_unplaced_tensors_are_reported_unexpected(tmp_path):
    body = build_backbone_body(_args("vitdet_base", vit_depth=1))
    state = {k[4:]: v for k, v in body.state_dict().items() if k.startswith("net.")}
    state["blocks.0.attn.some_new_thing"] = torch.zeros(3)
    state["blocks.5.norm1.weight"] = torch.ones(768)           # a block the trunk does not have
    _, unexpected = _load(body, state, tmp_path)
    assert sorted(unexpected) == ["blocks.0.attn.some_new_thing", "blocks.5.norm1.weight"]


def test_detector_file_loads_trunk_and_pyramid(tmp_path):
    """A detectron2 / detrex detector checkpoint: backbone.net.* (trunk) and backbone.simfp_* (pyramid) load."""
    args = _args("vitdet_base", return_interm_indices=[1, 2, 3, 4], vit_depth=1)
    torch.manual_seed(0)
    source = build_backbone_body(args)
    state = {("backbone." + k): v for k, v in source.state_dict().items()}
    state["transformer.encoder.layers.0.weight"] = torch.zeros(2)       # detector parts are not ours
    path = tmp_path / "detector.pth"
    torch.save({"model": state}, path)
    torch.manual_seed(1)
    loaded = build_backbone_body(argparse.Namespace(**vars(args), pretrained_backbone_path=str(path)))
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


# --------------------------------------------------------------------------- #
# DINOv2 trunk vs timm, ViT-Adapter, 14 -> 16 conversion
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,timm_name", [("vitadapter_dinov2_small", "vit_small_patch14_dinov2"),
                                            ("vitadapter_dinov2_giant", "vit_giant_patch14_dinov2")])
def test_dinov2_trunk_matches_timm(name, timm_name, tmp_path):
    from models.dino.backbones.vit_adapter import ADAPTER_SPECS, build_dinov2_trunk
    torch.manual_seed(0)
    depth = 1 if "giant" in name else 2
    ref = timm.create_model(timm_name, pretrained=False, img_size=112, depth=depth, class_token=False,
                            global_pool="avg", num_classes=0)
    _randomize_1d(ref)
    ref.eval()
    x = torch.randn(1, 3, 112, 112)
    expected = _timm_tokens(ref, x)
    args = _args(name, vit_pretrain_img_size=112, vit_global_attn_indexes=list(range(depth)))
    packed = "giant" in name
    for layout, state in {"timm": ref.state_dict(), "official": dinov2_official(ref.state_dict()),
                          "official-chunked+adapter-names": dinov2_official(ref.state_dict(), True, True)}.items():
        net = build_dinov2_trunk(args, ADAPTER_SPECS[name], depth=depth, patch=14)
        body = PyramidBody(net, [2])          # a holder with `.net` for the loader
        missing, unexpected = _load(body, state, tmp_path, swiglu_packed=packed)
        assert missing == [] and unexpected == [], (layout, missing, unexpected)
        net.eval()
        with torch.no_grad():
            diff = (net(x) - expected).abs().max().item()
        print(f"{name} trunk [{layout}] max |ours - timm| = {diff:.3g}")
        assert diff < 1e-4, (layout, diff)


def test_ratio_deform_attn_projects_values_to_ratio_width():
    from models.dino.backbones.vit_adapter import RatioMSDeformAttn
    attn = RatioMSDeformAttn(64, n_levels=2, n_heads=4, n_points=2, ratio=0.5)
    assert attn.value_proj.out_features == 32 and attn.output_proj.in_features == 32
    shapes = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    out = attn(torch.randn(2, 5, 64), torch.rand(2, 5, 2, 2), torch.randn(2, 20, 64), shapes, start)
    assert out.shape == (2, 5, 64)
    out.sum().backward()
    assert attn.value_proj.weight.grad is not None


def test_vit_adapter_outputs_and_odd_sizes():
    body = build_backbone_body(_args("vitadapter_dinov2_small", return_interm_indices=[0, 1, 2, 3], vit_depth=4,
                                     vit_adapter_norm="BN"))
    assert [len(range(a, b + 1)) for a, b in body.interaction_indexes] == [1, 1, 1, 1]
    outs = body(torch.randn(2, 3, 70, 100))
    assert [tuple(o.shape) for o in outs] == [(2, 384, 18, 25), (2, 384, 9, 13), (2, 384, 5, 7), (2, 384, 3, 4)]
    assert body.strides == [4, 8, 16, 32]
    without_c1 = build_backbone_body(_args("vitadapter_dinov2_small", return_interm_indices=[1, 2, 3], vit_depth=2))
    assert without_c1.up is None and without_c1.spm.fc1 is None      # nothing left without a gradient


def test_convert_14to16_tool(tmp_path):
    from tools.convert_14to16 import convert, main
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, depth=2, class_token=False,
                            global_pool="avg", num_classes=0)
    src = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(dinov2_official(ref.state_dict()), src)
    assert main([str(src)]) == 0
    out = torch.load(tmp_path / "dinov2_vits14_pretrain_14to16.pth")
    assert out["patch_embed.proj.weight"].shape == (384, 3, 16, 16)
    assert out["pos_embed"].shape == (1, 1 + 37 * 37, 384) and "mask_token" not in out
    same_px, report = convert(dinov2_official(ref.state_dict()), pos_grid="same-pixels")
    assert same_px["pos_embed"].shape == (1, 1 + 32 * 32, 384) and "37x37 -> 32x32" in report["pos_embed"]
    # the converted file loads into the ViT-Adapter body with nothing missing or unexpected in the trunk
    body = build_backbone_body(_args("vitadapter_dinov2_small", return_interm_indices=[1, 2, 3], vit_depth=2,
                                     vit_adapter_norm="BN"))
    missing, unexpected = _load(body, out, tmp_path, "converted.pth")
    assert missing == [] and unexpected == []
    assert torch.equal(body.net.pos_embed, out["pos_embed"][:, 1:])


def test_registry_imports_without_timm():
    """timm is optional for the project: these modules register their names without it and only
    building one of them asks for it."""
    code = ("import sys, argparse; sys.modules['timm'] = None\n"
            "from models.dino.backbones import available_backbones, build_backbone_body\n"
            "names = {'eva02_base', 'eva01_giant', 'vitdet_base', 'vitadapter_dinov2_giant'}\n"
            "assert names <= set(available_backbones())\n"
            "try:\n"
            "    build_backbone_body(argparse.Namespace(backbone='eva02_base', return_interm_indices=[1]))\n"
            "except ImportError as exc:\n"
            "    assert 'timm' in str(exc)\n"
            "else:\n"
            "    raise AssertionError('built without timm')\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


# --------------------------------------------------------------------------- #
# every config as a full DINO model
# --------------------------------------------------------------------------- #
SMALL = ["hidden_dim=64", "dim_feedforward=64", "enc_layers=1", "dec_layers=2", "num_queries=30", "dn_number=4",
         "nheads=4", "enc_n_points=2", "dec_n_points=2", "vit_depth=1"]


def test_every_table_config_exists():
    names = {os.path.basename(p) for p in VIT_CONFIGS}
    assert {"dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py",
            "dino_eva_02_vitdet_b_6attn_win32_1536_lrd0p7_4scale_12ep.py",
            "dino_eva_02_vitdet_l_4attn_1024_lrd0p8_4scale_12ep.py",
            "dino_eva_02_vitdet_l_8attn_1536_lrd0p8_4scale_12ep.py", "dino_eva_01_1280_4scale_12ep.py",
            "dino_vitdet_base_4scale_12ep.py", "dino_vitdet_large_4scale_12ep.py",
            "dino_vitadapter_dinov2_s.py", "dino_vitadapter_dinov2_b.py", "dino_vitadapter_dinov2_l.py",
            "dino_vitadapter_dinov2_g.py"} <= names


@pytest.mark.parametrize("config", VIT_CONFIGS)
def test_config_trains_one_step(config):
    try:
        from helpers import build_args, make_targets, random_images
        from main import build_model_main
    except ImportError as exc:     # the model API is being written concurrently
        pytest.skip(f"main / test helpers not importable yet: {exc}")
    from util.layer_decay import build_layer_decay_param_groups, layer_decay_rate

    # detrex's DINO-EVA configs pad every batch to a 1024+ square: tiny images here instead
    args = build_args(config, SMALL + (["vit_adapter_norm=BN"] if "vitadapter" in config else [])
                      + (["pad_to_square=0"] if "dino_eva" in config else []))
    torch.manual_seed(0)
    model, criterion, _ = build_model_main(args)
    body = model.backbone[0]
    assert body.num_layers == 1 and len(body.num_channels) == len(args.return_interm_indices)
    model.train()
    targets = make_targets([2, 1], num_classes=5)
    out = model(random_images([(64, 64), (48, 80)]), targets)
    losses = criterion(out, targets)
    total = sum(losses[k] * w for k, w in criterion.weight_dict.items())
    assert torch.isfinite(total)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # detrex resizes rel-pos tables the BEiT way in numpy (vit_rel_pos_interp='beit', EVA-01 1536, an
    # evaluation config): no gradient reaches a global block's tables through it, here as in detrex
    resized_beit = [n for n in no_grad if getattr(args, "vit_rel_pos_interp", None) == "beit"
                    and re.search(r"\.attn\.rel_pos_[hw]$", n)]
    assert no_grad == resized_beit
    if layer_decay_rate(args) is not None:
        groups = build_layer_decay_param_groups(model, args)
        ids = [id(p) for g in groups for p in g["params"]]
        assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
