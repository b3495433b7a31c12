"""detrex backbones load through the `detrex` layout remaps and compute what detrex's modules compute.

Each fixture in tests/fixtures/detrex_backbones/ was recorded by running
detrex's own backbone module (IDEA-Research/detrex e244e6c, detectron2 70f4543,
CPU, float32) with synthetic weights redrawn from the stored seed; here the
same weights, in detrex's key layout, go through `get_layout_remap("detrex",
name)`, load with strict=True into this project's body, and every returned
level must match detrex's (docs/BACKBONES.md, "detrex checkpoints").
"""
import argparse
import glob
import os

import pytest
import torch

from detrex_backbone_support import max_diffs
from models.dino.backbones.registry import get_layout_remap

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "detrex_backbones", "*.pt")))


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("path", FIXTURES, ids=[os.path.basename(p)[:-3] for p in FIXTURES])
def test_detrex_backbone_matches_detrex(path):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    diffs = max_diffs(_load(path))
    for level, (diff, scale) in enumerate(diffs):
        # float32 rounding: run in float64, both sides agree to 1e-13; in float32 detrex's own
        # outputs move by up to ~1.2e-4 relative on the deepest levels (FocalNet-L)
        assert diff <= 3e-4 * scale + 1e-5, f"level {level}: max |ours - detrex| = {diff:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("path", FIXTURES, ids=[os.path.basename(p)[:-3] for p in FIXTURES])
def test_detrex_remap_refuses_unknown_keys(path):
    fixture = _load(path)
    args = argparse.Namespace(**fixture["args"])
    state = {name: torch.zeros(1) for name, *_ in fixture["keys"]}  # the key check comes before any shape
    state["net.blocks.0.attn.mystery.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="mystery"):
        get_layout_remap("detrex", args.backbone)(state, args)


def test_fixtures_are_present_and_small():
    assert FIXTURES, "no detrex backbone fixtures found"
    assert all(os.path.getsize(p) < 1_000_000 for p in FIXTURES)


def test_detrex_convnext_refuses_a_stage_it_has_no_norm_for():
    """detrex's ConvNeXt keeps output norms of its returned stages only: a 4-scale checkpoint
    cannot serve a 5-scale config (the unused norms it lacks are filled in, a used one is not)."""
    path = [p for p in FIXTURES if "convnext_tiny" in p][0]
    fixture = _load(path)
    state = {name: torch.zeros(shape) for name, shape, *_ in fixture["keys"]}
    args = argparse.Namespace(**dict(fixture["args"], return_interm_indices=[0, 1, 2, 3]))
    with pytest.raises(ValueError, match="norm0"):
        get_layout_remap("detrex", args.backbone)(state, args)
    args = argparse.Namespace(**fixture["args"])
    out = get_layout_remap("detrex", args.backbone)(state, args)
    assert torch.equal(out["norm0.weight"], torch.ones_like(out["norm0.weight"]))


def _unpack(entry):
    """A constant buffer of a detrex parity fixture: {dtype, shape, lzma-packed bytes}."""
    import lzma

    import numpy as np
    raw = lzma.decompress(entry["lzma"])
    return torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"]).copy())


def test_eva02_rope_tables_are_detrex_s():
    """The remap drops detrex's RoPE buffers: the trunk's own tables at the real geometry (1024 input,
    windows of 16) must be the values detrex stores (recorded in the DINO-EVA-02-B parity fixture)."""
    pytest.importorskip("timm")
    from models.dino.backbones.registry import build_backbone_body
    path = os.path.join(os.path.dirname(__file__), "fixtures", "parity_detrex",
                        "dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep", "fixture.pt")
    fixed = {k: _unpack(v) for k, v in _load(path)["fixed_buffers"].items()}
    args = argparse.Namespace(backbone="eva02_base", return_interm_indices=[2], vit_depth=1, vit_img_size=1024,
                              vit_window_size=16, use_checkpoint=False, backbone_freeze_keywords=None)
    net = build_backbone_body(args).net
    cpu = torch.device("cpu")
    # the spacings the forward uses (EVA02ViT._run_block): window blocks / global blocks
    grids = {"rope_win": (16, net.rope_pt_grid / 16), "rope_glb": (net.ref_grid, net.rope_pt_grid / net.ref_grid)}
    for name, (side, step) in grids.items():
        sin, cos = net.rope(side, side, step, cpu).chunk(2, dim=-1)
        assert torch.allclose(cos, fixed[f"backbone.net.{name}.freqs_cos"], atol=1e-5), name
        assert torch.allclose(sin, fixed[f"backbone.net.{name}.freqs_sin"], atol=1e-5), name


# one fixture per family, with the detrex config of config/detrex/ it stands for
CONFIG_OF = {
    "eva02_base": "dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py",
    "eva01_giant": "dino_eva_01_1280_4scale_12ep.py",
    "vitdet_base": "dino_vitdet_base_4scale_12ep.py",
    "swin_T_224_1k": "dino_swin_tiny_224_4scale_12ep.py",
    "convnext_tiny_22k_384": "dino_convnext_tiny_384_4scale_12ep.py",
    "focalnet_L_384_22k_fl4": "dino_focalnet_large_lrf_384_fl4_5scale_12ep.py",
    "internimage_T_1k": "dino_internimage_tiny_4scale_12ep.py",
}
# a small transformer; the backbone keeps the config's settings except the ViT geometry of the fixture
TINY_TRANSFORMER = ["hidden_dim=32", "dim_feedforward=64", "enc_layers=1", "dec_layers=2", "num_queries=20",
                    "dn_number=3", "nheads=2", "enc_n_points=2", "dec_n_points=2"]
VIT_GEOMETRY = ("vit_depth", "vit_img_size", "vit_window_size", "vit_global_attn_indexes")


@pytest.mark.parametrize("name", sorted(CONFIG_OF))
def test_detrex_config_and_converter_give_detrex_backbone(name):
    """A whole detrex-layout checkpoint for the row's config goes through the converter
    (models/dino/checkpoint_layouts.detrex_to_project, which calls the family's remap), loads
    strictly into the model the config builds, and its backbone computes detrex's levels."""
    pytest.importorskip("timm")
    from detrex_backbone_support import skip_weight_init, synth_state
    from detrex_layout_support import to_detrex_layout
    from helpers import build_args
    from main import build_model_main
    from models.dino.checkpoint_layouts import detrex_to_project

    fixture = _load(os.path.join(os.path.dirname(__file__), "fixtures", "detrex_backbones", f"{name}.pt"))
    geometry = [f"{k}={v}".replace(" ", "") for k, v in fixture["args"].items() if k in VIT_GEOMETRY]
    args = build_args(f"config/detrex/{CONFIG_OF[name]}", TINY_TRANSFORMER + geometry)
    for key, value in fixture["args"].items():  # the config itself must hold detrex's backbone settings
        if key not in VIT_GEOMETRY:
            assert getattr(args, key) == value, f"{CONFIG_OF[name]}: {key}={getattr(args, key)!r}, detrex: {value!r}"
    with skip_weight_init():
        model = build_model_main(args)[0]
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    checkpoint = to_detrex_layout(own, num_backbone_levels=len(args.return_interm_indices))
    checkpoint.update({"backbone." + k: v for k, v in synth_state(fixture["keys"], fixture["seed"]).items()})
    converted, _ = detrex_to_project(checkpoint, args)
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        levels = model.backbone[0].eval()(fixture["input"].float())
    for ours, ref in zip(levels, fixture["outputs"]):
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() <= 3e-4 * ref.abs().max() + 1e-5
