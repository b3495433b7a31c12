"""Reference parity with detrex: a detrex checkpoint, converted by
tools/convert_checkpoint.py, loads strictly into the model of the config named
after the detrex config and computes what detrex's own code computed
(fixtures recorded from detrex on CPU: R50 and EVA-02-B are copies of
../shared/parity_detrex, the others were recorded the same way for the configs detrex
ships beyond its zoo tables, tests/fixtures/parity_detrex/README.md; the same comparison
as its check_detrex.py)."""
import glob
import lzma
import os

import numpy as np
import pytest
import torch

from helpers import REPO, build_args
from parity_support import IMAGENET_MEAN, IMAGENET_STD, fraction_of_rows_matched, load_fixture, output_rows, \
    synthetic_state_dict

FIXTURES = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(REPO, "tests", "fixtures", "parity_detrex",
                                                                     "*", "fixture.pt")))
MIN_MATCHED = 0.90
# full-size models, on 2 cores: R50 ~20 s-1 min, EVA-02-B on 1024 px squares ~2-3 min, R50 better_hyper
# and FocalNet-T fl3 ~25-40 s each, EVA-01 (1.0 G parameters, 40 blocks) ~3-4 min and ~9 GB of memory
pytestmark = pytest.mark.slow


def memory_needed_gb(spec) -> float:
    """What a fixture's model takes here: the synthetic checkpoint, its converted copy and the model
    (about 2 x the float32 weights over ~1.5 GB of torch; EVA-01 measured: 9.1 GB for 4.1 GB of weights)."""
    weights = sum(4 * int(np.prod(e["shape"])) for e in spec.values() if "same_as" not in e)
    return 2.0 * weights / 1e9 + 1.5


def memory_available_gb() -> float:
    """MemAvailable from /proc/meminfo (Linux); infinity where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("inf")


def detrex_state_dict(spec, fixture):
    """detrex's checkpoint: synthetic weights, exact constant buffers, shared tensors under both names."""
    state = synthetic_state_dict(spec, fixture["seed"])
    for key, entry in fixture["fixed_buffers"].items():
        raw = lzma.decompress(entry["lzma"])
        state[key] = torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"]).copy())
    for key, entry in spec.items():
        if "same_as" in entry:
            state[key] = state[entry["same_as"]]
    return state


def worst_match(ref_rows, got_rows, n_queries):
    """Worst fraction over images of reference rows matched in ours (all of ours: aux rows are subsampled)."""
    fractions = []
    for i in range(ref_rows.shape[0]):
        assert got_rows[i].shape[0] == n_queries
        fractions.append(fraction_of_rows_matched(ref_rows[i], got_rows[i]))
    return min(fractions)


def compare(ref, outs, n_queries):
    """{name: worst fraction} for final, aux and encoder outputs; `outs` one dict per image or one batch."""
    got = outs if isinstance(outs, list) else [outs]
    stack = lambda fn: torch.cat([output_rows(fn(o)) for o in got])  # noqa: E731
    result = {"final": worst_match(output_rows(ref), stack(lambda o: o), n_queries),
              "interm": worst_match(output_rows(ref["enc_outputs"]), stack(lambda o: o["interm_outputs"]), n_queries)}
    for i, aux in enumerate(ref["aux_outputs"]):
        result[f"aux{i}"] = worst_match(output_rows(aux), stack(lambda o: o["aux_outputs"][i]), n_queries)
    return result


@pytest.fixture(scope="module", params=FIXTURES, ids=[os.path.basename(p) for p in FIXTURES])
def converted_model(request, tmp_path_factory):
    from main import build_model_main
    from tools.convert_checkpoint import main as convert_main
    fixture, spec = load_fixture(request.param)
    need, have = memory_needed_gb(spec), memory_available_gb()
    if need > have:  # rather than letting the kernel kill the whole test run
        pytest.skip(f"{os.path.basename(request.param)} needs ~{need:.0f} GB of memory, {have:.0f} GB available")
    name = os.path.basename(fixture["detrex_config"])
    configs = glob.glob(os.path.join(REPO, "config", "**", name), recursive=True)
    assert len(configs) == 1, f"expected one config/**/{name}, found {configs}"
    tmp = tmp_path_factory.mktemp("detrex")
    src, dst = tmp / "detrex.pth", tmp / "converted.pth"
    torch.save({"model": detrex_state_dict(spec, fixture)}, src)
    assert convert_main([str(src), str(dst)]) == 0
    args = build_args(os.path.relpath(configs[0], REPO), fixture["project_options"])
    torch.manual_seed(0)
    model, criterion, post = build_model_main(args)
    model.load_state_dict(torch.load(dst, weights_only=False)["model"], strict=True)
    images = [((img.float() / 255.0) - IMAGENET_MEAN) / IMAGENET_STD for img in fixture["images_uint8"]]
    return fixture, model, criterion, post, images


def test_fixtures_present():
    assert len(FIXTURES) >= 5, "tests/fixtures/parity_detrex/*/fixture.pt missing"


def test_eval_outputs_and_postprocess(converted_model):
    fixture, model, _, post, images = converted_model
    n_queries = fixture["model_facts"]["num_queries"]
    model.eval()
    with torch.no_grad():
        outs = [model([img]) for img in images]  # detrex evaluates one image per batch
        results = [post["bbox"](o, torch.tensor([list(s)]))[0] for o, s in zip(outs, fixture["sizes"])]
    for name, frac in compare(fixture["eval_outputs"], outs, n_queries).items():
        assert frac >= MIN_MATCHED, f"eval {name}: only {frac:.1%} of rows match"
    for ref, got in zip(fixture["postprocess"], results):
        R = torch.cat([ref["scores"][:, None], ref["labels"][:, None].float(), ref["boxes"] / 100], -1)
        G = torch.cat([got["scores"][:, None], got["labels"][:, None].float(), got["boxes"] / 100], -1)
        matched = fraction_of_rows_matched(R, G) * min(len(R), len(G)) / max(len(R), len(G))
        assert matched >= MIN_MATCHED, f"{len(G)} detections, {len(R)} expected, {matched:.1%} match"


def test_train_outputs_and_losses(converted_model):
    fixture, model, criterion, _, images = converted_model
    model.train()
    criterion.train()
    for m in model.modules():  # the recording ran DropPath / Dropout in eval mode
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) or "droppath" in type(m).__name__.lower():
            m.eval()
    with torch.no_grad():
        out = model(images, fixture["targets"])
        losses = criterion(out, fixture["targets"])
    for name, frac in compare(fixture["train_outputs"], out, fixture["model_facts"]["num_queries"]).items():
        assert frac >= MIN_MATCHED, f"train {name}: only {frac:.1%} of rows match"
    wd = criterion.weight_dict
    total = float(sum(losses[k] * wd[k] for k in losses if k in wd))
    assert total == pytest.approx(fixture["weighted_total"], rel=0.01)
    for key, ref in fixture["losses"].items():
        if key in fixture["weight_dict"]:
            ours = fixture["loss_name_map"].get(key, key)
            assert float(losses[ours]) == pytest.approx(ref, rel=0.05, abs=1e-3), f"{ours} (detrex {key})"
