"""A training run killed at any moment and started again with the same command continues from
the last complete checkpoint and ends exactly as a run that was never interrupted; a
non-finite loss stops training with a clear message and leaves the checkpoint as it was."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_train_pipeline import (REPO, assert_same_weights, cli_env, describe, epoch_lines, load_ckpt,
                                 main_argv, one_thread, run, stepwise_run, straight_run, tiny_coco)  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start(argv, **env) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, env=cli_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 300) -> str:
    """Read the output until condition(line) holds, then SIGKILL; returns the output read."""
    seen = []
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            seen.append(line)
            if condition(line):
                proc.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "timed out waiting: " + "".join(seen[-30:])
        else:
            raise AssertionError("the run ended before it could be killed:\n" + "".join(seen[-40:]))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    return "".join(seen)


def finish_and_compare(tmp_path_factory, coco: Path, out: Path) -> subprocess.CompletedProcess:
    """Rerun the same command; it must continue at epoch 1 and end as the uninterrupted run."""
    proc = run(main_argv(coco, out, epochs=2))
    assert proc.returncode == 0, describe(proc)
    assert "auto-resume, epoch 0" in proc.stdout and "Start training at epoch 1 of 2" in proc.stdout
    reference = straight_run(tmp_path_factory) / "out"
    final, expected = load_ckpt(out / "checkpoint.pth"), load_ckpt(reference / "checkpoint.pth")
    assert final["epoch"] == 1
    assert_same_weights(final, expected)
    assert_same_weights(final, expected, "ema_model")
    skip = {"now_time", "epoch_time"}
    assert [{k: v for k, v in e.items() if k not in skip} for e in epoch_lines(out / "log.txt")] == \
        [{k: v for k, v in e.items() if k not in skip} for e in epoch_lines(reference / "log.txt")]
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    return proc


def test_sigkill_during_an_epoch_then_same_command_continues(tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "run"
    proc = start(main_argv(coco, out, epochs=2))
    kill_when(proc, lambda line: line.startswith("Epoch: [1] [0/"))  # in the middle of epoch 1
    assert load_ckpt(out / "checkpoint.pth")["epoch"] == 0
    assert [e["epoch"] for e in epoch_lines(out / "log.txt")] == [0]
    finish_and_compare(tmp_path_factory, coco, out)


def test_sigkill_while_writing_the_checkpoint_keeps_the_previous_one(tmp_path_factory, tmp_path):
    """Killed half-way through writing epoch 1's checkpoint.pth: epoch 0's file is intact, the
    restart removes the partial temporary file and redoes epoch 1."""
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "run"
    marker = tmp_path / "paused"
    proc = start(main_argv(coco, out, epochs=2), DINO_FAULT_CKPT="mid_write@checkpoint.pth#2",
                 DINO_FAULT_MARKER=str(marker))
    kill_when(proc, lambda line: "[fault injection] paused at mid_write" in line)
    assert marker.exists()
    partial = [p for p in os.listdir(out) if p.startswith(".checkpoint.pth.tmp-")]
    assert len(partial) == 1
    ckpt = load_ckpt(out / "checkpoint.pth")  # complete and readable
    assert ckpt["epoch"] == 0
    assert [e["epoch"] for e in epoch_lines(out / "log.txt")] == [0]
    proc = finish_and_compare(tmp_path_factory, coco, out)
    assert f"removed 1 temporary files of an interrupted save: {partial[0]}" in proc.stdout


def test_non_finite_loss_stops_with_message_and_keeps_checkpoint(tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "run"
    shutil.copytree(stepwise_run(tmp_path_factory) / "after_first", out)  # a run after epoch 0
    before = {name: sha(out / name) for name in ("checkpoint.pth", "checkpoint0000.pth", "log.txt")}
    proc = run(main_argv(coco, out, epochs=2), DINO_FAULT_NAN_LOSS="1:1")
    assert proc.returncode == 3, describe(proc)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    msg = lines[0]
    assert msg.startswith("error: loss is nan at epoch 1, iteration 1/2")
    assert "Non-finite loss terms: loss_bbox=nan" in msg
    assert "loss_ce=" not in msg  # only the non-finite terms are listed
    assert "The last checkpoint written is left as it was" in msg
    assert {name: sha(out / name) for name in before} == before
    assert not (out / "checkpoint0001.pth").exists()
    assert not [p for p in os.listdir(out) if ".tmp-" in p]


def test_diverging_training_is_stopped(tmp_path_factory, tmp_path):
    """A real divergence (no injection): lr=1e30 makes the weights infinite after one step."""
    coco = tiny_coco(tmp_path_factory)
    proc = run(main_argv(coco, tmp_path / "run", epochs=1, options=["lr=1e30", "lr_backbone=1e30"]))
    assert proc.returncode == 3, describe(proc)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "at epoch 0, iteration 1/2" in lines[0]  # the first step made the weights infinite
    assert "learning rate too high" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_missing_log_line_is_restored_from_the_checkpoint(tmp_path_factory, tmp_path, capsys):
    """Stopped after writing checkpoint.pth but before its log.txt line: the restart adds the line
    (from the checkpoint) so log.txt has every epoch once."""
    import argparse

    from main import get_args_parser, run_cli
    from test_train_pipeline import CONFIG, TINY_OPTIONS

    out = tmp_path / "run"
    shutil.copytree(straight_run(tmp_path_factory) / "out", out)
    lines = (out / "log.txt").read_text().splitlines(keepends=True)
    (out / "log.txt").write_text(lines[0])  # epoch 1's line lost
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--coco_path", str(tiny_coco(tmp_path_factory)), "--output_dir", str(out),
                              "--device", "cpu", "--num_workers", "0", "--options", "epochs=2", *TINY_OPTIONS])
    assert run_cli(args) == 0
    assert "Nothing to train: the checkpoint is at epoch 1 and epochs=2" in capsys.readouterr().out
    assert (out / "log.txt").read_text().splitlines(keepends=True) == lines
