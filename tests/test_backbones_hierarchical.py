"""Hierarchical backbones (Swin, ConvNeXt, FocalNet, InternImage).

Every registered name: real architecture at a tiny input (levels, strides,
channels) and a synthetic state dict in the authors' published layout loading
with nothing unexpected. Layouts shared with timm are checked numerically
against timm's models. One DINO training step per family, the original's
Swin key layout inside DINO, gradient checkpointing, freezing, dilation and
the DCNv3 operator against a direct implementation.
"""
import argparse
import itertools
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import REPO, build_tiny_model, make_targets, random_images

import models.dino.backbones.pretrained as pretrained
from models.dino.backbones import available_backbones, build_backbone_body
from models.dino.backbones.convnext import CONVNEXT_FILES, CONVNEXT_MODELS, remap_convnext
from models.dino.backbones.dcnv3 import DCNv3, dcnv3_sample
from models.dino.backbones.focalnet import FOCALNET_FILES, FOCALNET_SPECS, remap_focalnet
from models.dino.backbones.internimage import INTERNIMAGE_FILES, INTERNIMAGE_SPECS, remap_internimage
from models.dino.backbones.pretrained import load_pretrained
from models.dino.backbones.swin import SWIN_FILES, SWIN_SPECS, SwinBody, remap_swin

# Channels of stages 1, 2, 3 (stride 8, 16, 32), from the papers / official configs.
CHANNELS = {
    "swin_T_224_1k": (192, 384, 768), "swin_T_224_22k": (192, 384, 768), "swin_S_224_1k": (192, 384, 768),
    "swin_B_224_22k": (256, 512, 1024), "swin_B_384_22k": (256, 512, 1024),
    "swin_L_224_22k": (384, 768, 1536), "swin_L_384_22k": (384, 768, 1536),
    "convnext_tiny_22k": (192, 384, 768), "convnext_small_22k": (192, 384, 768),
    "convnext_base_22k": (256, 512, 1024), "convnext_large_22k": (384, 768, 1536),
    "convnext_xlarge_22k": (512, 1024, 2048),
    "convnext_tiny_22k_384": (192, 384, 768), "convnext_small_22k_384": (192, 384, 768),
    "convnext_base_22k_384": (256, 512, 1024), "convnext_large_22k_384": (384, 768, 1536),
    "focalnet_T_224_1k_fl3": (192, 384, 768), "focalnet_S_224_1k_fl3": (192, 384, 768),
    "focalnet_B_224_1k_fl3": (256, 512, 1024),
    "focalnet_L_384_22k": (384, 768, 1536), "focalnet_L_384_22k_fl4": (384, 768, 1536),
    "internimage_T_1k": (128, 256, 512), "internimage_S_1k": (160, 320, 640),
    "internimage_B_1k": (224, 448, 896), "internimage_L_22k": (320, 640, 1280),
}
FAMILIES = {"swin": SWIN_SPECS, "convnext": CONVNEXT_MODELS, "focalnet": FOCALNET_SPECS,
            "internimage": INTERNIMAGE_SPECS}
REMAPS = {"swin": remap_swin, "convnext": remap_convnext, "focalnet": remap_focalnet,
          "internimage": remap_internimage}
HEAVY = {n for n, (a, b, c) in CHANNELS.items() if c >= 1536} | {"internimage_L_22k"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These small CPU ops run faster on one thread than on two busy, shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def family(name):
    return next(f for f, names in FAMILIES.items() if name in names)


def body_args(name, **kw):
    values = dict(backbone=name, return_interm_indices=[1, 2, 3], dilation=False, use_checkpoint=False,
                  backbone_freeze_keywords=None)
    values.update(kw)
    return argparse.Namespace(**values)


def by_cost(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(names)]


def test_every_name_is_registered_with_channels_and_a_pretrained_file():
    names = set(itertools.chain(*FAMILIES.values()))
    assert names == set(CHANNELS)
    assert names <= set(available_backbones())
    files = {**SWIN_FILES, **CONVNEXT_FILES, **FOCALNET_FILES, **INTERNIMAGE_FILES}
    assert set(files) == names
    # the original DINO's file names for backbone_dir
    assert SWIN_FILES["swin_T_224_1k"] == "swin_tiny_patch4_window7_224.pth"
    assert SWIN_FILES["swin_B_384_22k"] == "swin_base_patch4_window12_384.pth"
    assert SWIN_FILES["swin_L_384_22k"] == "swin_large_patch4_window12_384_22k.pth"
    assert CONVNEXT_FILES["convnext_xlarge_22k"] == "convnext_xlarge_22k_224.pth"
    args = body_args("swin_L_384_22k", backbone_dir="/ckpt")
    assert pretrained.pretrained_path(args, SWIN_FILES) == "/ckpt/swin_large_patch4_window12_384_22k.pth"


def published_layout(name, body):
    """A state dict as the authors publish it (classification checkpoint), with
    fresh random values, and the body keys such a file cannot hold."""
    fam = family(name)
    own = body.state_dict()
    state = {k: (torch.rand_like(v) if v.is_floating_point() else v.clone()) for k, v in own.items()}
    last = body.num_features[3] if hasattr(body, "num_features") else body.dims[3]
    if fam in ("swin", "convnext", "focalnet"):
        # out norms are added for detection; the classifier has a final norm and a head
        state = {k: v for k, v in state.items() if not (k.startswith("norm") and k[4].isdigit())}
        state.update({"norm.weight": torch.ones(last), "norm.bias": torch.zeros(last),
                      "head.weight": torch.zeros(1000, last), "head.bias": torch.zeros(1000)})
    if fam == "swin":
        for key in list(state):
            if key.endswith("relative_position_index"):
                state[key] = torch.zeros_like(state[key])          # not trusted: recomputed
        state["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    if fam == "internimage":
        state.update({"conv_head.0.weight": torch.zeros(1280, last, 1, 1), "conv_head.1.1.weight": torch.ones(1280),
                      "head.weight": torch.zeros(1000, 1280), "head.bias": torch.zeros(1000)})
        if name == "internimage_T_1k":   # pretrained without layer scale
            state = {k: v for k, v in state.items() if not k.endswith(("gamma1", "gamma2"))}
    missing = set(own) - set(state) - {k for k in own if k.endswith("relative_position_index")}
    return state, missing


@pytest.mark.parametrize("name", by_cost(CHANNELS))
def test_levels_and_published_pretrained_layout(name, monkeypatch):
    body = build_backbone_body(body_args(name)).eval()
    assert body.num_channels == list(CHANNELS[name]) and body.strides == [8, 16, 32]
    with torch.no_grad():
        outs = body(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // s, 96 // s) for c, s in zip(CHANNELS[name], (8, 16, 32))]
    assert all(torch.isfinite(o).all() for o in outs)

    state, expected_missing = published_layout(name, body)
    monkeypatch.setattr(pretrained, "read_checkpoint", lambda path, trust=False: dict(state))
    result = load_pretrained(body, "published.pth", REMAPS[family(name)], what=name)
    assert result.unexpected_keys == []
    assert set(result.missing_keys) == expected_missing
    loaded = body.state_dict()
    not_loaded = [k for k, v in state.items() if k in loaded and v.is_floating_point() and not torch.equal(loaded[k], v)]
    assert not not_loaded, not_loaded[:5]


def test_pretrained_file_through_builder(tmp_path):
    """The whole path: {'model': ...} file in backbone_dir under the official name."""
    body = build_backbone_body(body_args("swin_T_224_1k"))
    state, _ = published_layout("swin_T_224_1k", body)
    torch.save({"model": state, "epoch": 300}, tmp_path / SWIN_FILES["swin_T_224_1k"])
    loaded = build_backbone_body(body_args("swin_T_224_1k", backbone_dir=str(tmp_path)))
    key = "layers.2.blocks.3.attn.qkv.weight"
    assert torch.equal(loaded.state_dict()[key], state[key])
    with pytest.raises(FileNotFoundError):
        build_backbone_body(body_args("swin_T_224_1k", pretrained_backbone_path=str(tmp_path / "missing.pth")))


def _randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05) if p.ndim > 1 else p.uniform_(-0.5, 1.5)
    return model


@pytest.mark.parametrize("timm_name,name,size", [
    ("swin_tiny_patch4_window7_224", "swin_T_224_1k", 448),   # 14x14 last stage: shifted windows everywhere
    ("convnext_tiny", "convnext_tiny_22k", 96),
    ("focalnet_tiny_lrf", "focalnet_T_224_1k_fl3", 96),
])
def test_timm_layout_loads_and_computes_the_same_stages(timm_name, name, size, monkeypatch):
    timm = pytest.importorskip("timm")
    kwargs = {"img_size": size} if name.startswith("swin") else {}
    reference = _randomize(timm.create_model(timm_name, pretrained=False, **kwargs)).eval()
    body = build_backbone_body(body_args(name, return_interm_indices=[0, 1, 2, 3])).eval()
    state = reference.state_dict()
    monkeypatch.setattr(pretrained, "read_checkpoint", lambda path, trust=False: dict(state))
    result = load_pretrained(body, "timm.pth", REMAPS[family(name)])
    assert result.unexpected_keys == [] and all(k.startswith("norm") for k in result.missing_keys)
    for i in range(4):            # compare the stages themselves, before the detection out norms
        setattr(body, f"norm{i}", torch.nn.Identity())
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref = reference.forward_intermediates(x, indices=[0, 1, 2, 3], norm=False, intermediates_only=True)
        got = body(x)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_swin_relative_position_tables_follow_the_window():
    small = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    src = _randomize(SwinBody(**small, window_size=7, out_indices=[1, 2, 3]))
    dst = SwinBody(**small, window_size=12, out_indices=[1, 2, 3])
    state = remap_swin(dict(src.state_dict()), dst)
    assert state["layers.1.blocks.0.attn.relative_position_bias_table"].shape == (23 * 23, 2)
    assert torch.equal(state["layers.1.blocks.0.attn.relative_position_index"],
                       dst.state_dict()["layers.1.blocks.0.attn.relative_position_index"])
    result = dst.load_state_dict(state, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys == []
    # the table is resized as an image: its centre (offset 0, 0) keeps its value
    old = src.layers[1].blocks[0].attn.relative_position_bias_table.view(13, 13, 2)
    new = dst.layers[1].blocks[0].attn.relative_position_bias_table.view(23, 23, 2)
    torch.testing.assert_close(new[11, 11], old[6, 6], atol=0.1, rtol=0)
    same = remap_swin(dict(src.state_dict()), src)
    assert torch.equal(same["layers.0.blocks.1.attn.relative_position_bias_table"],
                       src.state_dict()["layers.0.blocks.1.attn.relative_position_bias_table"])


def test_swin_window_attention_matches_explicit_softmax_with_gradients():
    from models.dino.backbones.swin import WindowAttention, shifted_window_mask
    torch.manual_seed(0)
    attn = WindowAttention(32, 7, 4)
    x = torch.randn(2, 6, 49, 32, requires_grad=True)
    for mask in (None, shifted_window_mask(14, 21, 7, 3, "cpu")):
        params = [attn.relative_position_bias_table, attn.qkv.weight, x]
        got = attn(x, mask)
        q, k, v = attn.qkv(x).view(2, 6, 49, 3, 4, 8).permute(3, 0, 1, 4, 2, 5).unbind(0)
        logits = (q * 8 ** -0.5) @ k.transpose(-2, -1) + attn.position_bias()
        if mask is not None:
            logits = logits + mask[:, None]
        ref = attn.proj((logits.softmax(-1) @ v).transpose(2, 3).reshape(2, 6, 49, 32))
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        for g, r in zip(torch.autograd.grad(got.square().sum(), params), torch.autograd.grad(ref.square().sum(), params)):
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_swin_key_layout_inside_dino_is_the_originals():
    model, _, _ = build_tiny_model("backbone=swin_T_224_1k", config="config/DINO/DINO_4scale_swin.py")
    keys = [k for k in model.state_dict() if k.startswith("backbone.")]
    assert len(keys) == 187          # the original's SwinTransformer(swin_T_224_1k, out_indices=(1, 2, 3))
    assert all(k.startswith("backbone.0.") for k in keys)
    for key in ["backbone.0.patch_embed.proj.weight", "backbone.0.patch_embed.norm.bias",
                "backbone.0.layers.0.blocks.1.attn.relative_position_bias_table",
                "backbone.0.layers.0.blocks.1.attn.relative_position_index",
                "backbone.0.layers.2.blocks.5.mlp.fc2.weight", "backbone.0.layers.2.downsample.reduction.weight",
                "backbone.0.layers.2.downsample.norm.weight", "backbone.0.norm1.weight", "backbone.0.norm3.bias"]:
        assert key in keys, key
    assert not any(k.startswith(("backbone.0.norm0", "backbone.0.layers.3.downsample")) for k in keys)
    assert model.state_dict()["backbone.0.layers.1.blocks.0.attn.relative_position_index"].dtype == torch.int64


@pytest.mark.parametrize("name", ["swin_T_224_1k", "convnext_tiny_22k_384", "focalnet_T_224_1k_fl3", "internimage_T_1k"])
def test_dino_train_step(name):
    config = {"swin": "config/DINO/DINO_4scale_swin.py", "convnext": "config/DINO/DINO_4scale_convnext.py",
              "focalnet": "config/DINO/DINO_4scale_focalnet_tiny.py",
              "internimage": "config/DINO/DINO_4scale_internimage_T.py"}[family(name)]
    model, criterion, _ = build_tiny_model(f"backbone={name}", config=config)
    assert model.backbone.num_channels == list(CHANNELS[name])
    model.train()
    targets = make_targets([2, 1])
    out = model(random_images([(64, 96), (72, 64)]), targets)
    losses = criterion(out, targets)
    total = sum(losses[k] * w for k, w in criterion.weight_dict.items() if k in losses)
    assert torch.isfinite(total)
    total.backward()
    body = model.backbone[0]
    first = next(p for n, p in body.named_parameters() if n.startswith(("patch_embed", "downsample_layers.0")))
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["swin_T_224_1k", "convnext_tiny_22k", "focalnet_T_224_1k_fl3", "internimage_T_1k"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    grads = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        body = build_backbone_body(body_args(name, use_checkpoint=use_checkpoint, backbone_drop_path_rate=0.0))
        body.train()
        x = torch.randn(1, 3, 48, 80, generator=torch.Generator().manual_seed(0))
        sum(o.square().mean() for o in body(x)).backward()
        grads.append({n: p.grad.clone() for n, p in body.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,expected", [
    ("swin_T_224_1k", [(10, 13), (5, 7), (3, 4)]),            # padded like the original
    ("focalnet_T_224_1k_fl3", [(10, 13), (5, 7), (3, 4)]),
    ("internimage_T_1k", [(10, 13), (5, 7), (3, 4)]),
    ("convnext_tiny_22k", [(9, 12), (4, 6), (2, 3)]),         # the original's stem does not pad
])
def test_odd_input_sizes(name, expected):
    body = build_backbone_body(body_args(name)).eval()
    with torch.no_grad():
        outs = body(torch.randn(2, 3, 75, 101))
    assert [tuple(o.shape[-2:]) for o in outs] == expected


def test_five_scale_levels():
    body = build_backbone_body(body_args("swin_T_224_1k", return_interm_indices=[0, 1, 2, 3]))
    assert body.num_channels == [96, 192, 384, 768] and body.strides == [4, 8, 16, 32]
    assert "norm0.weight" in body.state_dict()


def test_swin_dilation_and_the_families_without_it(monkeypatch):
    body = build_backbone_body(body_args("swin_T_224_1k", dilation=True)).eval()
    assert body.num_channels == [192, 384, 384] and body.strides == [8, 16, 16]
    assert body.layers[2].downsample is None
    with torch.no_grad():
        outs = body(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(192, 8, 12), (384, 4, 6), (384, 4, 6)]
    # pretrained weights of the undilated last stage are left out, as in the original
    plain = build_backbone_body(body_args("swin_T_224_1k"))
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith("norm")}
    monkeypatch.setattr(pretrained, "read_checkpoint", lambda path, trust=False: dict(state))
    result = load_pretrained(body, "swin.pth", remap_swin)
    assert result.unexpected_keys == []
    assert all(k.startswith(("layers.3.", "norm")) for k in result.missing_keys)
    for name in ("convnext_tiny_22k", "focalnet_T_224_1k_fl3", "internimage_T_1k"):
        with pytest.raises(ValueError, match="dilation"):
            build_backbone_body(body_args(name, dilation=True))


def test_freeze_keywords_and_bad_indices():
    body = build_backbone_body(body_args("swin_T_224_1k", backbone_freeze_keywords=["patch_embed", "layers.0."]))
    frozen = {n for n, p in body.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in body.named_parameters() if n.startswith(("patch_embed", "layers.0."))}
    convnext = build_backbone_body(body_args("convnext_tiny_22k"))
    assert not convnext.norm0.weight.requires_grad and convnext.norm1.weight.requires_grad   # unused out norm
    with pytest.raises(ValueError, match="return_interm_indices"):
        build_backbone_body(body_args("focalnet_T_224_1k_fl3", return_interm_indices=[3, 1]))


def test_focal_levels_from_the_config_override_the_name():
    body = build_backbone_body(body_args("focalnet_T_224_1k_fl3", focal_levels=2, focal_windows=5))
    modulation = body.layers[0].blocks[0].modulation
    assert len(modulation.focal_layers) == 2 and modulation.focal_layers[0][0].kernel_size == (5, 5)


def test_these_backbones_import_without_timm():
    """timm is optional: these modules (and so the registry's import of them) need torch only."""
    code = ("import sys; sys.modules['timm'] = None\n"
            "import importlib\n"
            "for m in ('swin', 'convnext', 'focalnet', 'internimage', 'dcnv3', 'resnet'):\n"
            "    importlib.import_module('models.dino.backbones.' + m)\n"
            "from models.dino.backbones.registry import _BACKBONES\n"
            "assert {'resnet50', 'swin_L_384_22k', 'convnext_xlarge_22k', 'focalnet_L_384_22k',\n"
            "        'internimage_T_1k'} <= set(_BACKBONES)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def _dcnv3_direct(value, offset, mask, k, stride, pad, dil, group, scale):
    """Per-sample loops: bilinear sampling with zeros outside the (padded) map."""
    n, h, w, c = value.shape
    _, ho, wo, _ = offset.shape
    cg = c // group
    padded = F.pad(value, (0, 0, pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad
    out = torch.zeros(n, ho, wo, c, dtype=value.dtype)
    half = (dil * (k - 1)) // 2

    def pixel(b, yy, xx, g):
        if 0 <= yy < hp and 0 <= xx < wp:
            return padded[b, yy, xx, g * cg:(g + 1) * cg]
        return torch.zeros(cg, dtype=value.dtype)

    for b, i, j, g in itertools.product(range(n), range(ho), range(wo), range(group)):
        acc = torch.zeros(cg, dtype=value.dtype)
        for p, (kx, ky) in enumerate(itertools.product(range(k), range(k))):     # column outer
            idx = g * k * k + p
            x = j * stride + half + (kx * dil - half) * scale + offset[b, i, j, 2 * idx] * scale
            y = i * stride + half + (ky * dil - half) * scale + offset[b, i, j, 2 * idx + 1] * scale
            x0, y0 = int(torch.floor(x)), int(torch.floor(y))
            fx, fy = x - x0, y - y0
            v = ((1 - fy) * (1 - fx) * pixel(b, y0, x0, g) + (1 - fy) * fx * pixel(b, y0, x0 + 1, g)
                 + fy * (1 - fx) * pixel(b, y0 + 1, x0, g) + fy * fx * pixel(b, y0 + 1, x0 + 1, g))
            acc += mask[b, i, j, idx] * v
        out[b, i, j, g * cg:(g + 1) * cg] = acc
    return out


@pytest.mark.parametrize("k,stride,pad,dil,group,scale", [(3, 1, 1, 1, 2, 1.0), (3, 1, 1, 1, 1, 2.0), (3, 2, 1, 2, 2, 0.5)])
def test_dcnv3_sampling_matches_a_direct_implementation(k, stride, pad, dil, group, scale):
    g = torch.Generator().manual_seed(0)
    n, h, w, c = 1, 5, 6, 2 * group
    ho = (h + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    wo = (w + 2 * pad - (dil * (k - 1) + 1)) // stride + 1
    value = torch.randn(n, h, w, c, generator=g, dtype=torch.float64)
    offset = torch.randn(n, ho, wo, group * k * k * 2, generator=g, dtype=torch.float64) * 1.5
    mask = torch.rand(n, ho, wo, group * k * k, generator=g, dtype=torch.float64)
    got = dcnv3_sample(value, offset, mask, k, stride, pad, dil, group, scale)
    ref = _dcnv3_direct(value, offset, mask, k, stride, pad, dil, group, scale)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_dcnv3_without_offsets_is_a_mean_over_the_window_and_differentiates():
    value = torch.randn(2, 7, 9, 8)
    offset = torch.zeros(2, 7, 9, 2 * 9 * 2)
    mask = torch.full((2, 7, 9, 2 * 9), 1 / 9)
    got = dcnv3_sample(value, offset, mask, 3, 1, 1, 1, 2, 1.0)
    ref = F.avg_pool2d(value.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=True).permute(0, 2, 3, 1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    layer = DCNv3(16, group=4).double()
    x = torch.randn(1, 4, 5, 16, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        layer.offset.weight.normal_(0, 0.1)
    assert torch.autograd.gradcheck(layer, (x,), atol=1e-5, rtol=1e-3, fast_mode=True)


MY_CONFIGS = {
    "DINO_4scale_swin.py": "swin_L_384_22k", "DINO_5scale_swin.py": "swin_L_384_22k",
    "DINO_4scale_swin_tiny.py": "swin_T_224_1k", "DINO_4scale_swin_small.py": "swin_S_224_1k",
    "DINO_4scale_swin_base_384.py": "swin_B_384_22k", "DINO_4scale_swin_large_224.py": "swin_L_224_22k",
    "DINO_4scale_convnext.py": "convnext_xlarge_22k",
    "DINO_4scale_convnext_tiny.py": "convnext_tiny_22k_384", "DINO_4scale_convnext_small.py": "convnext_small_22k_384",
    "DINO_4scale_convnext_base.py": "convnext_base_22k_384", "DINO_4scale_convnext_large.py": "convnext_large_22k_384",
    "DINO_4scale_focalnet_tiny.py": "focalnet_T_224_1k_fl3", "DINO_4scale_focalnet_small.py": "focalnet_S_224_1k_fl3",
    "DINO_4scale_focalnet_base.py": "focalnet_B_224_1k_fl3",
    "DINO_4scale_focalnet_large_fl3.py": "focalnet_L_384_22k", "DINO_4scale_focalnet_large_fl4.py": "focalnet_L_384_22k_fl4",
    "DINO_5scale_focalnet_large_fl4.py": "focalnet_L_384_22k_fl4",
    "DINO_4scale_internimage_T.py": "internimage_T_1k", "DINO_4scale_internimage_S.py": "internimage_S_1k",
    "DINO_4scale_internimage_B.py": "internimage_B_1k", "DINO_4scale_internimage_L.py": "internimage_L_22k",
}


def test_configs_and_scripts():
    from util.slconfig import SLConfig
    base4 = SLConfig.fromfile(os.path.join(REPO, "config", "DINO", "DINO_4scale.py")).to_dict()
    for file, backbone in MY_CONFIGS.items():
        cfg = SLConfig.fromfile(os.path.join(REPO, "config", "DINO", file))
        assert cfg.backbone == backbone, file
        levels = 5 if file.startswith("DINO_5scale") else 4
        assert cfg.num_feature_levels == levels and len(cfg.return_interm_indices) == levels - 1, file
        # everything else is the base DINO config (plus FocalNet-DINO's focal keys)
        changed = {k for k, v in cfg.to_dict().items() if base4.get(k, object()) != v}
        assert changed <= {"backbone", "use_checkpoint", "focal_levels", "focal_windows", "batch_size",
                           "return_interm_indices", "num_feature_levels"}, (file, changed)
    swin = SLConfig.fromfile(os.path.join(REPO, "config", "DINO", "DINO_4scale_swin.py"))
    assert swin.use_checkpoint is True and swin.return_interm_indices == [1, 2, 3]
    for script in ("DINO_train_swin.sh", "DINO_train_submitit_swin.sh", "DINO_train_convnext.sh",
                   "DINO_train_submitit_convnext.sh"):
        path = os.path.join(REPO, "scripts", script)
        subprocess.run(["bash", "-n", path], check=True)
        text = open(path).read()
        assert "backbone_dir=" in text and "dn_box_noise_scale=1.0" in text
