"""ViT-Adapter + DINOv2 against the authors' code (czczup/ViT-Adapter), its checkpoint layouts, the 14->16 tool.

The fixtures in tests/fixtures/vit_adapter/ were recorded by running the
authors' `ViTAdapter` (detection/mmdet_custom/models/backbones/vit_adapter.py,
the module of their DINOv2 Mask R-CNN configs) on CPU, with their deformable
attention op replaced by its PyTorch path, and their `convert_14to16.py`
unmodified. No weights are stored: `<variant>.json` lists every tensor of the
authors' backbone state dict (their key layout, shape, mean/std) and the
tensors are drawn from the fixture's seed (`parity_support.synthetic_state_dict`).
`<variant>.pt` holds the recorded multi-scale outputs for the two images of
`inputs.pt`: per level, 16 seeded random projections of all channels and 4 raw
channels, and the output scale.

Variants: small / base / large at the authors' full configs; base_d4 /
large_d4 / giant_d4 keep the width, heads, deform ratio and FFN (g: DINOv2's
SwiGLU) at depth 4 (one block per interaction group, windowed / global
alternating) so that every size runs fast; the full-depth base / large are
marked slow. ViT-g has no published ViT-Adapter config.
"""
import argparse
import hashlib
import json
import logging
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

from parity_support import synthetic_state_dict

pytest.importorskip("timm")

from models.dino.backbones import build_backbone_body  # noqa: E402
from models.dino.backbones.pretrained import load_pretrained  # noqa: E402
from models.dino.backbones.vit_adapter import remap_adapter_checkpoint  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "vit_adapter")
BACKBONE = {"small": "vitadapter_dinov2_small", "base": "vitadapter_dinov2_base",
            "large": "vitadapter_dinov2_large", "giant": "vitadapter_dinov2_giant"}
FAST = ["small", "base_d4", "large_d4", "giant_d4"]
SLOW = ["base", "large"]
# features have std ~3.5 and |max| ~15-30; the recorded match is ~1e-5
TOL = 1e-3


def _fixture(name):
    record = torch.load(os.path.join(FIXTURES, f"{name}.pt"), weights_only=False)
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        spec = json.load(f)
    return record, spec


def _args(name, config, levels=(0, 1, 2, 3), **extra):
    """Our builder's options for the authors' configuration recorded with the fixture."""
    kw = dict(backbone=BACKBONE[name.split("_")[0]], return_interm_indices=list(levels), use_checkpoint=False,
              backbone_freeze_keywords=None, vit_depth=config["depth"], vit_adapter_norm="BN",
              vit_global_attn_indexes=[i for i, windowed in enumerate(config["windowed"]) if not windowed],
              vit_adapter_interaction_indexes=config["interaction_indexes"])
    kw.update(extra)
    return argparse.Namespace(**kw)


def _detector_file(authors_backbone):
    """The container of the authors' COCO checkpoints: mmdet `state_dict` with backbone/neck/heads."""
    state = {"backbone." + k: v for k, v in authors_backbone.items()}
    state.update({"neck.lateral_convs.0.conv.weight": torch.zeros(256, 8, 1, 1),
                  "rpn_head.rpn_conv.weight": torch.zeros(256, 256, 3, 3),
                  "roi_head.bbox_head.fc_cls.weight": torch.zeros(81, 1024)})
    return {"meta": {"mmdet_version": "2.22.0"}, "state_dict": state}


def _max_diffs(outs, recorded, n_proj):
    """Per level: max |ours - authors| over the projections and the raw channels, and the level's scale."""
    rows = []
    for level, (out, ref) in enumerate(zip(outs, recorded)):
        assert list(out.shape) == ref["shape"], (level, out.shape, ref["shape"])
        c = out.shape[1]
        proj = torch.randn(c, n_proj, generator=torch.Generator().manual_seed(1000 + c)) / math.sqrt(c)
        d_proj = (torch.einsum("bchw,ck->bkhw", out, proj) - ref["proj"]).abs().max().item()
        d_chan = (out[:, ref["channel_index"]] - ref["channels"]).abs().max().item()
        rows.append((level, max(d_proj, d_chan), ref["absmax"]))
    return rows


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_adapter_outputs_match_the_authors(name, tmp_path, caplog):
    record, spec = _fixture(name)
    inputs = torch.load(os.path.join(FIXTURES, "inputs.pt"))
    authors = synthetic_state_dict(spec, record["seed"])
    if name == "small":  # the whole route: the authors' detector file named by backbone_checkpoint
        path = tmp_path / "mask_rcnn_dinov2_adapter_small_fpn_3x_coco.pth"
        torch.save(_detector_file(authors), path)
        with caplog.at_level(logging.INFO, logger="dino.backbone"):
            body = build_backbone_body(_args(name, record["config"], backbone_checkpoint=str(path)))
        assert "0 missing, 0 unexpected, 0 wrong shape" in caplog.text
    else:
        body = build_backbone_body(_args(name, record["config"]))
        state = remap_adapter_checkpoint(_detector_file(authors)["state_dict"], body)
        body.load_state_dict(state, strict=True)
    del authors
    body.eval()
    assert [tuple(i.shape[-2:]) for i in inputs["images"]] == [tuple(s) for s in record["sizes"]]
    for image, recorded in zip(inputs["images"], record["outputs"]):
        with torch.no_grad():
            outs = body(image[None])
        for level, diff, scale in _max_diffs(outs, recorded, record["n_proj"]):
            print(f"{name} {tuple(image.shape[-2:])} stride {4 * 2 ** level}: max |ours - authors| = {diff:.2e} "
                  f"(features up to {scale:.1f})")
            assert diff < TOL, (name, tuple(image.shape), level, diff)


def test_window_padding_is_the_authors(monkeypatch):
    """Windows that overhang the token grid: ViTDet's padding (before qkv) is measurably different,
    so the comparison above would catch a trunk that padded that way."""
    from models.dino.backbones import vit_adapter, vit_common
    record, spec = _fixture("small")
    body = build_backbone_body(_args("small", record["config"]))
    body.load_state_dict(remap_adapter_checkpoint(
        _detector_file(synthetic_state_dict(spec, record["seed"]))["state_dict"], body), strict=True)
    body.eval()
    image = torch.load(os.path.join(FIXTURES, "inputs.pt"))["images"][0][None]
    with torch.no_grad():
        ours = body(image)[2]
        monkeypatch.setattr(vit_adapter.DINOv2Trunk, "_run_block", vit_common.WindowedViT._run_block)
        padded_before_qkv = body(image)[2]
    assert (ours - padded_before_qkv).abs().max().item() > 100 * TOL


# --------------------------------------------------------------------------- #
# published checkpoint layouts
# --------------------------------------------------------------------------- #
def _dinov2_release(authors, patch14):
    """The DINOv2 release layout (dinov2_vit*14_pretrain.pth) of the authors' trunk tensors."""
    dim = authors["pos_embed"].shape[-1]
    out = {"cls_token": torch.randn(1, 1, dim), "pos_embed": authors["pos_embed"], "mask_token": torch.zeros(1, dim),
           "patch_embed.proj.weight": patch14, "patch_embed.proj.bias": authors["patch_embed.proj.bias"]}
    for key, value in authors.items():
        if key.startswith("blocks."):
            out[key.replace(".gamma1", ".ls1.gamma").replace(".gamma2", ".ls2.gamma")] = value
    out.update({"norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)})
    return out


def _load(body, state, path, through_file):
    """Load as `pretrained_backbone_path` does; through a file (its container unwrapped) or from memory."""
    if through_file:
        torch.save(state, path)
        return load_pretrained(body, str(path), lambda s, m: remap_adapter_checkpoint(s, m))
    state = state.get("state_dict", state.get("model", state))
    return body.load_state_dict(remap_adapter_checkpoint(state, body), strict=False)


@pytest.mark.parametrize("name", FAST)
def test_published_layouts_load(name, tmp_path):
    """DINOv2 release (patch 14), its 14->16 conversion, the authors' COCO detector file, our DINO checkpoint.

    Files are written and read for ViT-S; the larger variants load the same dicts from memory (time).
    """
    from tools.convert_14to16 import convert
    record, spec = _fixture(name)
    disk = name == "small"
    authors = synthetic_state_dict(spec, record["seed"])
    body = build_backbone_body(_args(name, record["config"], levels=(1, 2, 3)))   # as the DINO configs
    trunk = [k for k in body.state_dict() if k.startswith("net.")]
    adapter = [k for k in body.state_dict() if not k.startswith("net.") and "num_batches_tracked" not in k]
    dim = authors["pos_embed"].shape[-1]
    patch14 = torch.randn(dim, 3, 14, 14, generator=torch.Generator().manual_seed(14)) * 0.03
    release = _dinov2_release(authors, patch14)

    result = _load(body, release, tmp_path / "dinov2_pretrain.pth", disk)
    assert sorted(result.missing_keys) == sorted(adapter) and result.unexpected_keys == []
    expected = F.interpolate(patch14, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(body.net.patch_embed.proj.weight, expected)        # ViT-Adapter's 14 -> 16
    assert torch.equal(body.net.pos_embed, authors["pos_embed"][:, 1:])   # 37 x 37 grid read as 592 px
    on_the_fly = {k: v.clone() for k, v in body.state_dict().items() if k.startswith("net.")}

    converted, _ = convert(release)
    result = _load(body, converted, tmp_path / "dinov2_pretrain_14to16.pth", disk)
    assert sorted(result.missing_keys) == sorted(adapter) and result.unexpected_keys == []
    assert all(torch.equal(body.state_dict()[k], v) for k, v in on_the_fly.items())

    result = _load(body, _detector_file(authors), tmp_path / "mask_rcnn_dinov2_adapter_fpn_3x_coco.pth", disk)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(body.level_embed, authors["level_embed"])
    assert torch.equal(body.norms["3"].running_var, authors["norm4.running_var"])
    assert torch.equal(body.interactions[0].extractor.ffn.dwconv.weight,
                       authors["interactions.0.extractor.ffn.dwconv.dwconv.weight"])
    assert not any(k in trunk for k in result.missing_keys)

    saved = {k: v.clone() for k, v in body.state_dict().items()}
    ours = {"model": {"backbone.0." + k: v for k, v in saved.items()}, "epoch": 3}
    ours["model"]["transformer.level_embed"] = torch.zeros(4, 256)
    with torch.no_grad():
        for p in body.parameters():
            p.zero_()
    result = _load(body, ours, tmp_path / "checkpoint.pth", disk)     # this project's DINO checkpoint
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert all(torch.equal(body.state_dict()[k], v) for k, v in saved.items())


def test_unplaced_tensors_are_reported(tmp_path):
    record, spec = _fixture("small")
    authors = synthetic_state_dict(spec, record["seed"])
    body = build_backbone_body(_args("small", record["config"]))
    state = _detector_file(authors)
    state["state_dict"]["backbone.interactions.9.injector.gamma"] = torch.zeros(384)
    del state["state_dict"]["backbone.spm.fc2.weight"]
    result = _load(body, state, tmp_path / "partial.pth", True)
    assert result.missing_keys == ["spm.fc2.weight"]
    assert result.unexpected_keys == ["backbone.interactions.9.injector.gamma"]


# --------------------------------------------------------------------------- #
# tools/convert_14to16.py
# --------------------------------------------------------------------------- #
def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_convert_14to16_gives_the_authors_tensors(tmp_path, capsys):
    from tools.convert_14to16 import main
    record = torch.load(os.path.join(FIXTURES, "convert_14to16.pt"), weights_only=False)
    with open(os.path.join(FIXTURES, "convert_14to16.json")) as f:
        spec = json.load(f)
    src = tmp_path / "dinov2_vitt14_pretrain.pth"
    torch.save(synthetic_state_dict(spec, record["seed"]), src)
    before = _sha(src)
    assert main([str(src)]) == 0
    ours = torch.load(tmp_path / "dinov2_vitt14_pretrain_14to16.pth")
    assert list(ours) == record["keys"]
    for key, value in record["output"].items():
        assert torch.equal(ours[key], value), key
    assert _sha(src) == before

    capsys.readouterr()
    assert main([str(src)]) == 1                       # an existing output is kept
    assert main([str(src), "-o", str(src)]) == 1       # the input is never written over
    assert main([str(tmp_path / "missing.pth")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "--overwrite" in err[0] and "input" in err[1] and "not found" in err[2]
    assert _sha(src) == before
    assert [p.name for p in tmp_path.iterdir() if not re.match(r"dinov2_vitt14_pretrain(_14to16)?\.pth$", p.name)] == []

    assert main([str(src), "--overwrite", "--keep-names", "--method", "bicubic"]) == 0
    kept = torch.load(tmp_path / "dinov2_vitt14_pretrain_14to16.pth")
    assert "blocks.0.ls1.gamma" in kept and "blocks.0.gamma1" not in kept


def test_dino_starts_from_the_authors_coco_adapter(tmp_path, caplog):
    """A DINO model built from the ViT-Adapter-S config takes trunk + adapter from the authors' detector file."""
    from helpers import build_args, make_targets, random_images
    from main import build_model_main
    record, spec = _fixture("small")
    authors = synthetic_state_dict(spec, record["seed"])
    path = tmp_path / "mask_rcnn_dinov2_adapter_small_fpn_3x_coco.pth"
    torch.save(_detector_file(authors), path)
    options = ["hidden_dim=64", "dim_feedforward=64", "enc_layers=1", "dec_layers=1", "num_queries=20",
               "dn_number=2", "nheads=4", "enc_n_points=2", "dec_n_points=2", "vit_adapter_norm=BN",
               f"backbone_checkpoint={path}"]
    args = build_args("config/DINO/dino_vitadapter_dinov2_s.py", options)
    with caplog.at_level(logging.INFO, logger="dino.backbone"):
        model, criterion, _ = build_model_main(args)
    assert "0 missing, 0 unexpected, 0 wrong shape" in caplog.text
    body = model.backbone[0]
    assert torch.equal(body.net.blocks[11].attn.qkv.weight, authors["blocks.11.attn.qkv.weight"])
    assert torch.equal(body.interactions[3].extra_extractors[1].attn.value_proj.weight,
                       authors["interactions.3.extra_extractors.1.attn.value_proj.weight"])
    assert torch.equal(body.norms["1"].weight, authors["norm2.weight"])
    targets = make_targets([1], num_classes=5)
    model.train()
    losses = criterion(model(random_images([(64, 96)]), targets), targets)
    assert all(torch.isfinite(v) for v in losses.values())
