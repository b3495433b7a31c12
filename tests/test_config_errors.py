"""Mistakes on the command line, in the config, the data path or a checkpoint: one line on
stderr naming the key / path / file, exit status 2, no traceback."""
from __future__ import annotations

import argparse
import os
import subprocess

import pytest
import torch

from test_train_pipeline import CONFIG, PYTHON, REPO, TINY_OPTIONS, cli_env, one_thread, tiny_coco  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --------------------------------------------------------------------------- through the command line
CLI_CASES = {
    "unknown_key": (["--options", "epochs=1", "lr_dorp=5"],
                    ["--options: unknown config key 'lr_dorp'", "Did you mean 'lr_drop'"]),
    "wrong_type": (["--options", "epochs=twelve"],
                   ["--options epochs='twelve': expected a number like the config's 12"]),
    "missing_coco_path": ([], ["--coco_path /nonexistent/coco does not exist or is not a folder"]),
}


def test_cli_errors_are_one_line_with_status_2(tmp_path):
    """The three runs go in parallel (each mostly waits for `import torch`)."""
    procs = {}
    for name, (extra, _) in CLI_CASES.items():
        coco = "/nonexistent/coco" if name == "missing_coco_path" else str(REPO)
        argv = [PYTHON, "main.py", "-c", CONFIG, "--coco_path", coco, "--output_dir", str(tmp_path / name), *extra]
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, f"{name}: rc={proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"
        line = _one_error_line(err)
        for expected in CLI_CASES[name][1]:
            assert expected in line, line
        assert not (tmp_path / name / "checkpoint.pth").exists()


# --------------------------------------------------------------------------- in process (same code path)
def _args(*argv):
    from main import get_args_parser
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    return parser.parse_args(["-c", CONFIG, "--num_workers", "0", "--device", "cpu", *argv])


def _run(capsys, *argv) -> tuple:
    from main import run_cli
    status = run_cli(_args(*argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_option_that_is_a_command_line_flag(capsys, tmp_path):
    status, _, err = _run(capsys, "--coco_path", str(tmp_path), "--options", "coco_path=/data")
    assert status == 2
    assert "'coco_path' is a command-line flag, not a config key; pass --coco_path instead" in _one_error_line(err)


def test_config_key_that_is_a_command_line_flag(capsys, tmp_path):
    cfg = tmp_path / "my_config.py"
    cfg.write_text(f"_base_ = [{str(REPO / CONFIG)!r}]\nseed = 3\n")
    from main import get_args_parser, run_cli
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    status = run_cli(parser.parse_args(["-c", str(cfg), "--coco_path", str(tmp_path), "--device", "cpu"]))
    err = capsys.readouterr().err
    assert status == 2
    assert "config key 'seed'" in err and "is also a command-line flag" in _one_error_line(err)


def test_legacy_options_of_the_original_scripts_are_accepted():
    from main import load_config
    args = _args("--options", "dn_scalar=100", "dn_label_coef=1.0", "dn_bbox_coef=1.0", "dn_box_noise_scale=1.0",
                 "embed_init_tgt=TRUE")
    cfg, ignored = load_config(args)
    assert ignored == ["dn_bbox_coef", "dn_label_coef", "dn_scalar"]
    assert "dn_scalar" not in cfg and cfg["dn_box_noise_scale"] == 1.0


def test_missing_config_file(capsys, tmp_path):
    from main import get_args_parser, run_cli
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    status = run_cli(parser.parse_args(["-c", "config/DINO/nope.py", "--coco_path", str(tmp_path)]))
    assert status == 2 and "config file not found" in _one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(capsys, tmp_path_factory):
    coco = tiny_coco(tmp_path_factory)
    from main import get_args_parser, run_cli
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--coco_path", str(coco), "--device", "cuda", "--options", *TINY_OPTIONS])
    status = run_cli(args)
    assert status == 2
    assert "--device cuda: no CUDA device is available here; use --device cpu" in _one_error_line(capsys.readouterr().err)


def test_missing_annotation_file_is_a_data_error(capsys, tmp_path):
    (tmp_path / "train2017").mkdir()
    (tmp_path / "val2017").mkdir()
    status, _, err = _run(capsys, "--coco_path", str(tmp_path), "--options", *TINY_OPTIONS)
    assert status == 2
    assert "Traceback" not in err and "instances_train2017.json does not exist" in err


def test_resume_of_a_missing_file(capsys, tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    status, _, err = _run(capsys, "--coco_path", str(coco), "--output_dir", str(tmp_path / "o"),
                          "--resume", str(tmp_path / "nope.pth"), "--options", "epochs=1", *TINY_OPTIONS)
    assert status == 2
    line = _one_error_line(err)
    assert f"--resume {tmp_path / 'nope.pth'}: file does not exist" in line


def test_resume_of_something_that_is_not_a_checkpoint(capsys, tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    status, _, err = _run(capsys, "--coco_path", str(coco), "--eval", "--resume", str(notes), "--options",
                          *TINY_OPTIONS)
    assert status == 2 and "notes.txt is not a readable PyTorch checkpoint" in _one_error_line(err)


@pytest.fixture(scope="module")
def six_class_checkpoint(tmp_path_factory):
    """A checkpoint of the tiny model with 6 classes (the tests run with 4)."""
    from main import build_model_main
    from main import get_args_parser, load_config, apply_config
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--device", "cpu", "--options", *TINY_OPTIONS, "num_classes=6",
                              "dn_labelbook_size=6"])
    cfg, _ = load_config(args)
    apply_config(cfg, args)
    torch.manual_seed(1)
    model, _, _ = build_model_main(args)
    path = tmp_path_factory.mktemp("six") / "six_classes.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 5,
                "args": argparse.Namespace(num_classes=6)}, path)
    return path


def test_resume_of_a_checkpoint_with_another_class_count(capsys, tmp_path_factory, six_class_checkpoint):
    coco = tiny_coco(tmp_path_factory)
    status, _, err = _run(capsys, "--coco_path", str(coco), "--eval", "--resume", str(six_class_checkpoint),
                          "--options", *TINY_OPTIONS)
    assert status == 2
    line = _one_error_line(err)
    assert "does not fit the model" in line
    assert "label_enc.weight (checkpoint [7, 32] vs model [5, 32])" in line
    assert "class_embed.0.weight (checkpoint [6, 32] vs model [4, 32])" in line
    assert f"--pretrain_model_path {six_class_checkpoint} --finetune_ignore class_embed label_enc.weight" in line
    # the class counts it was trained with, read off its class rows, as the options to pass
    assert "--options num_classes=6 dn_labelbook_size=6" in line


def test_finetune_from_another_class_count(capsys, tmp_path_factory, tmp_path, six_class_checkpoint):
    """--pretrain_model_path with --finetune_ignore: the rest is loaded, the dropped keys are
    reported, and training starts at epoch 0 (here: evaluation only, to keep it short)."""
    coco = tiny_coco(tmp_path_factory)
    status, out, err = _run(capsys, "--coco_path", str(coco), "--output_dir", str(tmp_path / "ft"), "--eval",
                            "--pretrain_model_path", str(six_class_checkpoint), "--finetune_ignore",
                            "label_enc.weight", "class_embed", "--options", *TINY_OPTIONS)
    assert status == 0, err
    assert "--pretrain_model_path: ignored 11 keys matching --finetune_ignore" in out  # label_enc + 10 class_embed
    assert "model keys not in" in out and "label_enc.weight" in out
    assert f"Loaded weights from {six_class_checkpoint} (--pretrain_model_path)" in out
    assert "Average Precision" in out
    # without the ignore words the shapes do not fit: a clear error instead of a crash
    status, _, err = _run(capsys, "--coco_path", str(coco), "--eval", "--pretrain_model_path",
                          str(six_class_checkpoint), "--options", *TINY_OPTIONS)
    assert status == 2 and "--finetune_ignore class_embed label_enc.weight" in _one_error_line(err)


def test_output_dir_checkpoint_is_not_used_over_explicit_resume_of_missing_file(capsys, tmp_path_factory, tmp_path):
    """An explicit --resume always wins: a missing file is an error even when the output dir
    holds a checkpoint.pth that could be resumed instead."""
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "o"
    out.mkdir()
    torch.save({"model": {"x": torch.ones(1)}}, out / "checkpoint.pth")
    status, _, err = _run(capsys, "--coco_path", str(coco), "--output_dir", str(out), "--resume",
                          str(tmp_path / "typo.pth"), "--options", *TINY_OPTIONS)
    assert status == 2 and "typo.pth: file does not exist" in _one_error_line(err)
    assert not os.path.exists(out / "log.txt")
