"""TensorBoard events of a training run (util/hooks.py), W&B on request, tools/plot_logs.py."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types

import pytest

from test_train_pipeline import PYTHON, REPO, read_log, stepwise_run, straight_run  # noqa: F401


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_two_epoch_run_writes_tensorboard_loss_lr_and_ap(tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = straight_run(tmp_path_factory) / "out"
    assert [p for p in os.listdir(out) if p.startswith("events.out.tfevents")]
    scalars = _scalars(out)
    log = read_log(out / "log.txt")
    # 2 iterations per epoch (4 images, batch 2), logged at every --print_freq 1 step
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2, 3]
    assert {"train/lr", "train/loss_ce", "train/loss_bbox", "train/loss_giou"} <= set(scalars)
    assert not [t for t in scalars if t.startswith("train/") and t.endswith(("_0", "_interm"))]
    for prefix in ("test", "ema_test"):
        ap = scalars[f"{prefix}/AP"]
        assert [s for s, _ in ap] == [1, 3]  # each epoch's last step
        assert [v for _, v in ap] == pytest.approx([e[f"{prefix}_coco_eval_bbox"][0] for e in log], abs=1e-6)
        assert len([t for t in scalars if t.startswith(f"{prefix}/")]) == 12 + 1  # 12 COCO numbers + loss
    per_class = log[-1]["test_coco_eval_per_class"]
    assert set(per_class) == {"circle", "square", "triangle"}
    for name, values in per_class.items():
        if values["AP"] is not None:
            assert scalars[f"test_per_class_AP/{name}"][-1][1] == pytest.approx(values["AP"], abs=1e-6)
    assert scalars["train_epoch/loss"][-1][1] == pytest.approx(log[-1]["train_loss"], rel=1e-6)


def test_continued_run_appends_tensorboard_steps_without_repeats(tmp_path_factory):
    """epochs=1 then the same command with epochs=2: one event file per process, steps 0..3 once."""
    pytest.importorskip("tensorboard")
    scalars = _scalars(stepwise_run(tmp_path_factory) / "out")
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2, 3]
    assert [s for s, _ in scalars["test/AP"]] == [1, 3]


class _FakeRun:
    def __init__(self, calls):
        self.calls = calls

    def log(self, data, step):
        self.calls.append(("log", step, dict(data)))

    def finish(self):
        self.calls.append(("finish",))


def test_wandb_hook_logs_steps_and_epochs_and_keeps_the_run_id(tmp_path):
    """WandbHook with a stand-in for the wandb module (not installed here): what it is given."""
    from util.hooks import WandbHook

    calls = []
    fake = types.SimpleNamespace(util=types.SimpleNamespace(generate_id=lambda: "abc123"),
                                 init=lambda **kw: calls.append(("init", kw)) or _FakeRun(calls))
    trainer = types.SimpleNamespace(iter=0, iters_per_epoch=2, epoch=0, global_step=0, log_stats={},
                                    step_metrics={"loss": 3.0, "lr": 1e-4, "loss_ce": 1.0, "loss_ce_0": 9.0})
    hook = WandbHook(fake, "proj", str(tmp_path), {"lr": 1e-4}, period=1)
    hook.trainer = trainer
    hook.before_train()
    hook.after_step()
    trainer.log_stats = {"test_coco_eval_bbox": [0.5] + [0.0] * 11, "train_loss": 2.5}
    hook.after_epoch()
    hook.after_train()
    assert calls[0] == ("init", {"project": "proj", "name": tmp_path.name, "id": "abc123", "resume": "allow",
                                 "dir": str(tmp_path), "config": {"lr": 1e-4}})
    assert calls[1] == ("log", 0, {"train/loss": 3.0, "train/lr": 1e-4, "train/loss_ce": 1.0})
    assert calls[2][:2] == ("log", 1) and calls[2][2]["test/AP"] == 0.5 and calls[2][2]["train_epoch/loss"] == 2.5
    assert calls[3] == ("finish",)
    assert (tmp_path / "wandb_run_id.txt").read_text().strip() == "abc123"
    hook.before_train()  # a restart continues the same W&B run
    assert calls[-1][1]["id"] == "abc123"


def test_wandb_project_without_wandb_is_one_line_error(tmp_path, monkeypatch):
    if "wandb" in sys.modules or any(os.path.isdir(os.path.join(p, "wandb")) for p in sys.path if p):
        pytest.skip("wandb is installed")
    proc = subprocess.run([PYTHON, "main.py", "-c", "config/DINO/DINO_4scale.py", "--coco_path", str(tmp_path),
                           "--device", "cpu", "--wandb_project", "x"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --wandb_project: the wandb package is not installed; `pip install wandb` (and `wandb login`), "
        "or leave --wandb_project out."]


def test_console_log_is_coloured_when_asked_and_the_file_stays_plain(tmp_path, capsys):
    pytest.importorskip("termcolor")
    from util.logger import remove_handlers, setup_logger, use_color

    log = setup_logger(output=str(tmp_path / "info.txt"), color=True, name="dino_colour_test")
    log.info("hello")
    log.warning("careful")
    remove_handlers(log)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("\x1b[32m[") and out[0].endswith("dino_colour_test\x1b[0m INFO] hello")
    assert out[1].endswith("\x1b[33mWARNING\x1b[0m] careful")
    text = (tmp_path / "info.txt").read_text()
    assert "\x1b" not in text and text.strip().splitlines()[1].endswith("dino_colour_test WARNING] careful")
    assert not use_color(io.StringIO())  # not a terminal: the default is plain


# --------------------------------------------------------------------------- plot_logs
def _plot(*argv, in_process: bool = True):
    """tools/plot_logs.py with these arguments (in this process unless asked: imports are slow)."""
    if not in_process:
        return subprocess.run([PYTHON, "tools/plot_logs.py", *map(str, argv)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    import contextlib
    import io

    from tools import plot_logs

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = plot_logs.run([str(a) for a in argv])
    return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())


def test_plot_logs_writes_a_png_of_two_runs(tmp_path_factory, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    run_a = straight_run(tmp_path_factory) / "out"
    run_b = stepwise_run(tmp_path_factory) / "after_first"
    before = {p: p.read_bytes() for p in (run_a / "log.txt", run_b / "log.txt")}
    out = tmp_path / "curves.png"
    proc = _plot(run_a, run_b / "log.txt", "--out", out, in_process=False)  # as a person runs it
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "(2 runs, 3 epochs)" in proc.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1500, 800)
    assert {p: p.read_bytes() for p in before} == before
    assert os.listdir(tmp_path) == ["curves.png"]  # no temporary file left

    again = _plot(run_a, "--out", out)  # exists: refused, file unchanged
    assert again.returncode == 2 and again.stderr.startswith("error: --out") and "--overwrite" in again.stderr
    assert _plot(run_a, "--out", out, "--overwrite").returncode == 0


def test_plot_logs_refuses_its_input_and_reports_problems_in_one_line(tmp_path_factory, tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "log.txt"
    log.write_text(json.dumps({"epoch": 0, "train_loss": 1.0}) + "\n")
    content = log.read_bytes()
    cases = [
        ((run_dir, "--out", log, "--overwrite"), "is the input"),
        ((tmp_path / "nope", "--out", tmp_path / "a.png"), "does not exist"),
        ((tmp_path, "--out", tmp_path / "a.png"), "holds no log.txt"),
        ((run_dir, "--out", tmp_path / "a.txt"), "unknown picture format"),
    ]
    for argv, words in cases:
        proc = _plot(*argv)
        assert proc.returncode == 2 and words in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert log.read_bytes() == content
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "log.txt").write_text('{"mode": "eval"}\n{"epoch": 0, "train_lo')  # eval line + a cut line
    proc = _plot(empty, "--out", tmp_path / "b.png")
    assert proc.returncode == 2 and "has no epoch lines" in proc.stderr
