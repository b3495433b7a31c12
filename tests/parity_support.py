"""Compare this implementation with outputs recorded from the original DINO code.

A fixture directory holds `spec.json` (name, shape, dtype, mean and std of
every state-dict entry of the original model) and `fixture.pt` (seed, config,
--options, image sizes, targets and the original's outputs and losses).
Weights and images are re-created deterministically from the entry names and
the seed, so no weights are stored. Output rows (one per query) are compared
as sets, because queries whose scores tie may come out in another order.
"""
import json
import os
import zlib
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed((zlib.crc32(name.encode()) + 7919 * seed) % (2 ** 31 - 1))


def synthetic_state_dict(spec: Dict[str, Dict], seed: int) -> Dict[str, torch.Tensor]:
    out = {}
    for name, entry in spec.items():
        shape = tuple(entry["shape"])
        if entry["dtype"] != "float32":
            out[name] = torch.full(shape, int(entry["mean"]), dtype=getattr(torch, entry["dtype"]))
            continue
        t = torch.randn(shape, generator=_generator(name, seed)) * entry["std"] + entry["mean"]
        out[name] = t.abs() + 0.5 if name.endswith("running_var") else t
    return out


def synthetic_images(sizes, seed: int) -> List[torch.Tensor]:
    images = []
    for i, (h, w) in enumerate(sizes):
        g = _generator(f"image{i}", seed)
        low = torch.rand(3, h // 16 + 1, w // 16 + 1, generator=g)
        smooth = F.interpolate(low[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        noise = torch.rand(3, h, w, generator=g) * 0.15
        img = ((smooth * 0.85 + noise) * 255).clamp(0, 255).to(torch.uint8)
        images.append(((img.float() / 255.0) - IMAGENET_MEAN) / IMAGENET_STD)
    return images


def load_fixture(directory: str) -> Tuple[dict, dict]:
    fixture = torch.load(os.path.join(directory, "fixture.pt"), weights_only=False)
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    return fixture, spec


def fraction_of_rows_matched(ref: torch.Tensor, got: torch.Tensor, tol: float = 1e-3) -> float:
    """Fraction of rows of `ref` with a one-to-one partner row in `got` within tolerance."""
    ref, got = ref.float(), got.float()
    cost = torch.cdist(ref, got, p=float("inf"))
    r, c = linear_sum_assignment(cost.numpy())
    bound = tol + tol * torch.maximum(ref[r].abs().amax(-1), got[c].abs().amax(-1))
    return float((cost[r, c] <= bound).float().mean())


def output_rows(out: Dict) -> torch.Tensor:
    return torch.cat([out["pred_logits"], out["pred_boxes"]], -1).detach()


def compare_outputs(ref: Dict, got: Dict) -> Dict[str, float]:
    """Worst per-image fraction of matching rows, for the final / aux / interm outputs."""
    pairs = {"final": (ref, got), "interm": (ref["interm_outputs"], got["interm_outputs"])}
    assert len(ref["aux_outputs"]) == len(got["aux_outputs"])
    pairs.update({f"aux{i}": p for i, p in enumerate(zip(ref["aux_outputs"], got["aux_outputs"]))})
    result = {}
    for name, (r, g) in pairs.items():
        R, G = output_rows(r), output_rows(g)
        assert R.shape == G.shape, f"{name}: {tuple(G.shape)} != {tuple(R.shape)}"
        result[name] = min(fraction_of_rows_matched(R[i], G[i]) for i in range(R.shape[0]))
    return result
