"""Reference parity: with the original's weights layout and the same inputs,
this implementation computes what the original DINO code computes."""
import glob
import os

import pytest
import torch

from helpers import REPO, build_args
from parity_support import compare_outputs, fraction_of_rows_matched, load_fixture, synthetic_images, synthetic_state_dict

FIXTURES = sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "parity", "*", "fixture.pt")))
MIN_MATCHED = 0.90


@pytest.fixture(scope="module", params=[os.path.dirname(p) for p in FIXTURES],
                ids=[os.path.basename(os.path.dirname(p)) for p in FIXTURES])
def parity_run(request):
    from main import build_model_main
    fixture, spec = load_fixture(request.param)
    args = build_args(fixture["config"], fixture["options"])
    torch.manual_seed(0)
    model, criterion, post = build_model_main(args)
    return fixture, spec, model, criterion, post


def test_fixtures_present():
    assert FIXTURES, "tests/fixtures/parity/*/fixture.pt missing"


def test_state_dict_layout_matches_original(parity_run):
    fixture, spec, model, _, _ = parity_run
    sd = model.state_dict()
    assert sorted(sd) == sorted(spec)
    wrong = [k for k in spec if list(sd[k].shape) != spec[k]["shape"]]
    assert not wrong


def test_eval_train_outputs_postprocess_and_losses(parity_run):
    fixture, spec, model, criterion, post = parity_run
    model.load_state_dict(synthetic_state_dict(spec, fixture["seed"]), strict=True)
    images = synthetic_images(fixture["sizes"], fixture["seed"])

    model.eval()
    with torch.no_grad():
        out = model(images)
        results = post["bbox"](out, torch.tensor(fixture["sizes"]))
    for name, frac in compare_outputs(fixture["eval_outputs"], out).items():
        assert frac >= MIN_MATCHED, f"eval {name}: only {frac:.1%} of rows match"
    for ref, got in zip(fixture["postprocess"], results):
        R = torch.cat([ref["scores"][:, None], ref["labels"][:, None].float(), ref["boxes"] / 100], -1)
        G = torch.cat([got["scores"][:, None], got["labels"][:, None].float(), got["boxes"] / 100], -1)
        assert fraction_of_rows_matched(R, G) >= MIN_MATCHED

    model.train()
    criterion.train()
    with torch.no_grad():
        out = model(images, fixture["targets"])
        losses = criterion(out, fixture["targets"])
    for name, frac in compare_outputs(fixture["train_outputs"], out).items():
        assert frac >= MIN_MATCHED, f"train {name}: only {frac:.1%} of rows match"
    wd = criterion.weight_dict
    total = float(sum(losses[k] * wd[k] for k in losses if k in wd))
    assert total == pytest.approx(fixture["weighted_total"], rel=0.01)
    for key, ref in fixture["losses"].items():
        if key in wd:
            assert float(losses[key]) == pytest.approx(ref, rel=0.05, abs=1e-3), key
