"""Checkpoints: atomic writes, reading (ours, the original's, broken files), fitting weights to a
model, optimizer and RNG state, EMA, and resume == uninterrupted training."""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pathlib
import subprocess
import textwrap
from collections import OrderedDict

import pytest
import torch

from test_train_pipeline import (PYTHON, REPO, assert_same_weights, epoch_lines, load_ckpt, stepwise_run,
                                 straight_run)
from test_train_pipeline import one_thread  # noqa: F401  (a fixture the tests below request by name)

pytestmark = pytest.mark.usefixtures("one_thread")
from util.checkpoint import (CheckpointError, get_rng_state, load_checkpoint, load_model_weights,
                             load_optimizer_state, remove_stale_tmp_files, save_checkpoint_files, set_rng_state)


def sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny():
    """The tiny DINO (4 classes) built as main.py builds it."""
    from helpers import build_tiny_model
    model, _, _ = build_tiny_model("num_classes=4", "dn_labelbook_size=4")
    return model


# --------------------------------------------------------------------------- atomic writes
def test_save_writes_all_paths_and_no_temporary_files(tmp_path):
    paths = [tmp_path / "checkpoint0003.pth", tmp_path / "checkpoint.pth"]
    save_checkpoint_files({"model": {"w": torch.arange(5.0)}, "epoch": 3}, paths)
    for p in paths:
        assert torch.load(p, weights_only=True)["epoch"] == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth", "checkpoint0003.pth"]


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint_files({"model": {"w": torch.zeros(3)}, "epoch": 0}, [path])
    before = sha(path)

    def half_then_crash(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial data")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_crash)
    from util.atomic import OutputError
    with pytest.raises(OutputError, match="could not write .*checkpoint.pth: No space left on device"):
        save_checkpoint_files({"model": {"w": torch.ones(3)}, "epoch": 1}, [tmp_path / "checkpoint0001.pth", path])
    assert sha(path) == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth"]  # temporary files removed


@pytest.mark.parametrize("stage", ["mid_write", "before_replace"])
def test_process_killed_while_saving_keeps_previous_checkpoint(tmp_path, stage):
    """SIGKILL in the middle of a save (no Python cleanup runs): the old file is intact, only a
    hidden temporary file is left, and remove_stale_tmp_files deletes it."""
    marker = tmp_path / "marker"
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from util.checkpoint import save_checkpoint_files
        big = {{"model": {{"w": torch.randn(256, 1024)}}}}
        save_checkpoint_files(dict(big, epoch=0), [{str(tmp_path / 'checkpoint.pth')!r}])
        save_checkpoint_files(dict(big, epoch=1), [{str(tmp_path / 'checkpoint.pth')!r}])
    """)
    env = dict(os.environ, DINO_FAULT_CKPT=f"{stage}@checkpoint.pth#2", DINO_FAULT_MARKER=str(marker))
    proc = subprocess.Popen([PYTHON, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert ckpt["epoch"] == 0
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".checkpoint.pth.tmp-")]
    assert len(leftovers) == 1
    assert remove_stale_tmp_files(str(tmp_path)) == leftovers
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth", "marker"]


# --------------------------------------------------------------------------- reading
def test_missing_file_folder_empty_and_garbage(tmp_path):
    with pytest.raises(CheckpointError, match=r"--resume .*nope\.pth: file does not exist"):
        load_checkpoint(str(tmp_path / "nope.pth"), "--resume")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a folder; give a checkpoint file \(e\.g\. .*checkpoint\.pth\)"):
        load_checkpoint(str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_checkpoint(str(tmp_path / "run" / "checkpoint.pth"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt is not a readable PyTorch checkpoint"):
        load_checkpoint(str(text))


def test_truncated_checkpoint_is_reported(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.randn(1000)}, "epoch": 0}, good)
    bad = tmp_path / "checkpoint.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"not a readable PyTorch checkpoint .*truncated"):
        load_checkpoint(str(bad), "--resume")


def test_not_a_checkpoint_dict(tmp_path):
    path = tmp_path / "x.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list, not a checkpoint"):
        load_checkpoint(str(path))
    torch.save({"epoch": 3, "notes": "x"}, path)
    with pytest.raises(CheckpointError, match=r"has no 'model' entry \(its keys: 'epoch', 'notes'\)"):
        load_checkpoint(str(path))


def test_original_code_checkpoint_format(tmp_path):
    """The original saves 'model' (with module. prefixes when saved from DDP in some forks),
    'optimizer', 'lr_scheduler', 'epoch', 'args' (a pickled argparse.Namespace), 'ema_model'."""
    path = tmp_path / "checkpoint0011.pth"
    args = argparse.Namespace(lr=1e-4, modelname="dino", lr_drop_list=[33, 45], frozen_weights=None)
    torch.save({"model": OrderedDict([("module.class_embed.0.weight", torch.ones(2, 3))]),
                "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"step_size": 11},
                "epoch": 11, "args": args, "ema_model": {"module.class_embed.0.weight": torch.zeros(2, 3)}}, path)
    ckpt = load_checkpoint(str(path))
    assert list(ckpt["model"]) == ["class_embed.0.weight"]
    assert list(ckpt["ema_model"]) == ["class_embed.0.weight"]
    assert ckpt["epoch"] == 11 and ckpt["args"].lr_drop_list == [33, 45]


def test_checkpoint_with_other_python_objects_is_refused_unless_trusted(tmp_path, caplog):
    """No silent fallback to full unpickling: an object outside the allow-list is refused by name;
    trust=True (--trust_checkpoint) reads it, with a warning."""
    from util.checkpoint import UntrustedCheckpointError
    path = tmp_path / "old.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(path=pathlib.PurePosixPath("/x"))}, path)
    with pytest.raises(UntrustedCheckpointError, match=r"old.pth: refused .* pathlib.PurePosixPath"):
        load_checkpoint(str(path))
    with caplog.at_level("WARNING", logger="dino.checkpoint"):
        ckpt = load_checkpoint(str(path), trust=True)
    assert str(ckpt["args"].path) == "/x"
    assert "--trust_checkpoint" in caplog.text


def test_bare_state_dict_is_accepted(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"module.a": torch.ones(1)}, path)
    assert list(load_checkpoint(str(path))["model"]) == ["a"]


# --------------------------------------------------------------------------- fitting to the model
def test_other_class_count_names_keys_and_finetune_ignore(tiny, tmp_path):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    for k in list(state):
        if k.startswith("label_enc") or "class_embed" in k:
            shape = list(state[k].shape)
            shape[0] = 92 if k.startswith("label_enc") else 91
            state[k] = torch.zeros(shape)
    with pytest.raises(CheckpointError) as err:
        load_model_weights(tiny, state, "coco.pth", "--resume", strict=True)
    msg = str(err.value)
    assert "label_enc.weight (checkpoint [92, 32] vs model [5, 32])" in msg
    assert "class_embed.0.weight (checkpoint [91, 32] vs model [4, 32])" in msg
    assert "num_classes / dn_labelbook_size differ" in msg
    assert "--pretrain_model_path coco.pth --finetune_ignore class_embed label_enc.weight" in msg

    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    missing, unexpected, ignored = load_model_weights(tiny, state, "coco.pth", "--pretrain_model_path", strict=False,
                                                      ignore=["label_enc.weight", "class_embed"])
    assert "label_enc.weight" in ignored and "label_enc.weight" in missing and not unexpected
    assert torch.equal(tiny.state_dict()["label_enc.weight"], before["label_enc.weight"])  # kept as initialised

def test_keys_set_aside_for_the_class_map_are_neither_ignored_nor_missing(tiny, caplog):
    """--finetune_class_map copies the class rows itself: the load before it must not report
    them as ignored (--finetune_ignore) or as left as initialised."""
    state = {k: v.clone() + 1 for k, v in tiny.state_dict().items()}
    state["label_enc.weight"] = torch.zeros(92, 32)  # another class count: would not fit
    before = tiny.state_dict()["label_enc.weight"].clone()
    with caplog.at_level(logging.INFO):
        missing, unexpected, ignored = load_model_weights(
            tiny, state, "coco.pth", "--pretrain_model_path", strict=False, ignore=["transformer.enc_out"],
            set_aside=["class_embed", "label_enc"])
    assert ignored and all("transformer.enc_out" in k for k in ignored)
    assert set(missing) == set(ignored) and not unexpected  # only the ignored keys stay as initialised
    assert not any("class_embed" in k or "label_enc" in k for k in ignored)
    assert torch.equal(tiny.state_dict()["label_enc.weight"], before)
    level_embed = next(k for k in state if "level_embed" in k)
    assert torch.equal(tiny.state_dict()[level_embed], state[level_embed])  # the rest is loaded
    assert "class_embed" not in caplog.text and "label_enc" not in caplog.text



def test_other_backbone_or_levels_is_explained(tiny):
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith("input_proj.3")}
    state["input_proj.4.0.weight"] = torch.zeros(32, 32, 3, 3)
    with pytest.raises(CheckpointError, match=r"number of feature levels differs \(a 4-scale vs a 5-scale"):
        load_model_weights(tiny, state, "x.pth", "--resume", strict=True)


def test_foreign_state_dict_is_refused(tiny):
    with pytest.raises(CheckpointError, match="does not hold weights of this model: none of its 2 tensors"):
        load_model_weights(tiny, {"fc.weight": torch.ones(3), "fc.bias": torch.ones(3)}, "r.pth",
                           "--pretrain_model_path", strict=False)


def test_optimizer_state_of_another_model_is_refused(tiny):
    params = [p for p in tiny.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    other = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(7)) for _ in params], lr=1e-4)
    for p in other.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    other.step()
    with pytest.raises(CheckpointError, match="optimizer state has a tensor of shape \\[7\\]"):
        load_optimizer_state(opt, other.state_dict(), "x.pth")
    fewer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    with pytest.raises(CheckpointError, match="does not fit this model's parameter groups"):
        load_optimizer_state(opt, fewer.state_dict(), "x.pth")


# --------------------------------------------------------------------------- RNG, EMA, best metric
def test_rng_state_round_trip(tmp_path):
    import random

    import numpy as np
    state = get_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    path = tmp_path / "rng.pth"
    torch.save({"rng": state}, path)
    loaded = torch.load(path, weights_only=True)["rng"]  # readable without pickled Python objects
    torch.rand(5), np.random.rand(5), random.random()
    assert set_rng_state(loaded)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    assert not set_rng_state(None)


def test_ema_updates_shared_heads_once(tiny):
    from util.ema import ModelEma
    ema = ModelEma(tiny, decay=0.5)
    assert ema.module.bbox_embed[0] is ema.module.transformer.decoder.bbox_embed[0]  # shared, as in DINO
    with torch.no_grad():
        target = {k: v.clone() for k, v in tiny.state_dict().items()}
        start = {k: v.clone() for k, v in ema.module.state_dict().items()}
        for p in tiny.parameters():
            p.add_(1.0)
    ema.update(tiny)
    key = "bbox_embed.0.layers.0.weight"
    assert torch.allclose(ema.module.state_dict()[key], start[key] * 0.5 + (target[key] + 1.0) * 0.5)
    with torch.no_grad():
        for p in tiny.parameters():
            p.sub_(1.0)


def test_best_metric_holder_state():
    from util.metric_logger import BestMetricHolder
    h = BestMetricHolder(use_ema=True)
    assert h.update(0.0, 0)  # the first result is a best, even at 0 AP
    assert not h.update(0.0, 1, is_ema=True)
    assert h.update(0.3, 2, is_ema=True)
    g = BestMetricHolder(use_ema=True)
    g.load_state_dict(h.state_dict())
    assert g.summary() == h.summary() and g.summary()["ema_best_ep"] == 2


# --------------------------------------------------------------------------- resume == no interruption
@pytest.mark.slow
def test_resume_gives_the_same_training_as_no_interruption(tmp_path_factory):
    """epochs=1 then the same command with epochs=2 == epochs=2 in one go: same weights (bit for
    bit), same EMA, same optimizer state and the same log lines (losses, AP)."""
    straight = straight_run(tmp_path_factory) / "out"
    stepwise = stepwise_run(tmp_path_factory) / "out"
    a, b = load_ckpt(straight / "checkpoint.pth"), load_ckpt(stepwise / "checkpoint.pth")
    assert a["epoch"] == b["epoch"] == 1
    assert_same_weights(a, b)
    assert_same_weights(a, b, "ema_model")
    for pid, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], b["optimizer"]["state"][pid]["exp_avg_sq"])
    skip = {"now_time", "epoch_time"}
    la, lb = epoch_lines(straight / "log.txt"), epoch_lines(stepwise / "log.txt")
    assert [{k: v for k, v in e.items() if k not in skip} for e in la] == \
        [{k: v for k, v in e.items() if k not in skip} for e in lb]
    assert la[1]["train_loss"] == lb[1]["train_loss"]  # the next-step losses are identical
