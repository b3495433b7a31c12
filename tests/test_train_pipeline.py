"""main.py end to end on CPU: train one epoch, evaluate a checkpoint, continue a run.

Also holds the helpers the other CLI tests share (test_checkpoint, test_resume_kill,
test_distributed, test_submitit): a tiny COCO-format dataset, the tiny model
options and a cache of runs kept under pytest's session temp dir, so a run that
several tests compare against (e.g. two epochs without interruption) is done once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The tiny DINO of the CLI tests: every path of the real model, ~0.6 M parameters
# (ResNet-18 cut after layer2; levels 3 and 4 come from the extra stride-2 convs).
TINY_OPTIONS = [
    "backbone=resnet18", "return_interm_indices=[0,1]", "hidden_dim=32", "dim_feedforward=64",
    "enc_layers=1", "dec_layers=2", "num_queries=20", "dn_number=3", "nheads=2", "enc_n_points=2",
    "dec_n_points=2", "num_classes=4", "dn_labelbook_size=4", "batch_size=2",
    "data_aug_scales=[64]", "data_aug_max_size=96", "data_aug_scales2_resize=[64]",
    "data_aug_scales2_crop=[48,64]", "use_ema=True", "ema_decay=0.9", "backbone_pretrained=False",
]
CONFIG = "config/DINO/DINO_4scale.py"
RUN_TIMEOUT = 420


# --------------------------------------------------------------------------- helpers
def cli_env(**extra: str) -> Dict[str, str]:
    """Environment for CLI runs: one thread (deterministic, and equal between 1 and 2
    processes), unbuffered output, no fault injection unless asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DINO_FAULT", "RANK", "WORLD_SIZE",
                                                                      "LOCAL_RANK", "MASTER_", "SLURM_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.pop("DINO_PROGRESS", None)
    env.update(extra)
    return env


def main_argv(coco: Path, out: Optional[Path], *extra: str, epochs: int = 1,
              options: Sequence[str] = ()) -> List[str]:
    argv = [PYTHON, "main.py", "-c", CONFIG, "--coco_path", str(coco), "--num_workers", "0", "--print_freq", "1",
            "--device", "cpu"]
    if out is not None:
        argv += ["--output_dir", str(out)]
    argv += list(extra)
    argv += ["--options", f"epochs={epochs}", *TINY_OPTIONS, *options]
    return argv


def run(argv: Sequence[str], timeout: int = RUN_TIMEOUT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=REPO, env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout (tail)\n{proc.stdout[-4000:]}\n--- stderr (tail)\n{proc.stderr[-4000:]}"


def shared_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "dino_cli_shared"
    root.mkdir(exist_ok=True)
    return root


def tiny_coco(tmp_path_factory) -> Path:
    """4 train and 3 val images (an odd count, so 2 processes split it unevenly), 64-96 px."""
    root = shared_root(tmp_path_factory) / "coco"
    if not (root / "DONE").exists():
        shutil.rmtree(root, ignore_errors=True)
        from datasets.synthetic import generate_synthetic_coco
        generate_synthetic_coco(str(root), num_train=4, num_val=3, num_classes=3, min_size=64, max_size=96,
                                min_objects=1, max_objects=3, seed=0)
        (root / "DONE").write_text("ok")
    return root


def cached(tmp_path_factory, name: str, produce) -> Path:
    """produce(folder) once per session (the folder is reused by later callers)."""
    folder = shared_root(tmp_path_factory) / name
    if not (folder / "DONE").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        produce(folder)
        (folder / "DONE").write_text("ok")
    return folder


def save_proc(folder: Path, tag: str, proc: subprocess.CompletedProcess) -> None:
    (folder / f"{tag}.stdout").write_text(proc.stdout)
    (folder / f"{tag}.stderr").write_text(proc.stderr)
    (folder / f"{tag}.rc").write_text(str(proc.returncode))


def load_proc(folder: Path, tag: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], int((folder / f"{tag}.rc").read_text()),
                                       (folder / f"{tag}.stdout").read_text(), (folder / f"{tag}.stderr").read_text())


def straight_run(tmp_path_factory) -> Path:
    """Two epochs without interruption (the reference of the resume tests); output in ./out."""
    coco = tiny_coco(tmp_path_factory)

    def produce(folder: Path):
        proc = run(main_argv(coco, folder / "out", epochs=2))
        save_proc(folder, "run", proc)
        assert proc.returncode == 0, describe(proc)

    return cached(tmp_path_factory, "straight_2ep", produce)


def stepwise_run(tmp_path_factory) -> Path:
    """The same two epochs as `straight_run`, as one run of epochs=1 then the same command with
    epochs=2 (which must continue). Keeps the first run's outputs (first.*, after_first/)."""
    coco = tiny_coco(tmp_path_factory)

    def produce(folder: Path):
        out = folder / "out"
        first = run(main_argv(coco, out, epochs=1))
        save_proc(folder, "first", first)
        assert first.returncode == 0, describe(first)
        shutil.copytree(out, folder / "after_first")
        second = run(main_argv(coco, out, epochs=2))
        save_proc(folder, "second", second)
        assert second.returncode == 0, describe(second)

    return cached(tmp_path_factory, "stepwise_1_then_2", produce)


def load_ckpt(path: Path) -> dict:
    from util.checkpoint import load_checkpoint
    return load_checkpoint(str(path), "test")


def assert_same_weights(a: dict, b: dict, key: str = "model") -> None:
    assert a[key].keys() == b[key].keys()
    different = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def read_log(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def epoch_lines(path: Path) -> List[dict]:
    return [e for e in read_log(path) if "epoch" in e]


@pytest.fixture
def one_thread():
    """In-process model work on one thread (as the CLI runs): on a busy 2-core machine two
    OpenMP threads made the tiny model ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def stepwise(tmp_path_factory) -> Path:
    return stepwise_run(tmp_path_factory)


def test_one_epoch_writes_checkpoints_config_and_log(stepwise):
    proc = load_proc(stepwise, "first")
    first = stepwise / "after_first"
    for name in ("checkpoint.pth", "checkpoint0000.pth", "checkpoint_best_regular.pth", "log.txt", "info.txt",
                 "config_cfg.py", "config_args_raw.json", "config_args_all.json"):
        assert (first / name).is_file(), name
    assert not [p for p in os.listdir(first) if ".tmp-" in p], "temporary files left behind"

    lines = read_log(first / "log.txt")
    assert len(lines) == 1
    entry = lines[0]
    assert entry["epoch"] == 0 and entry["n_parameters"] > 0 and "epoch_time" in entry
    assert len(entry["test_coco_eval_bbox"]) == 12 and len(entry["ema_test_coco_eval_bbox"]) == 12
    assert "train_loss" in entry and "train_loss_bbox" in entry and "train_lr" in entry
    assert "test_loss" in entry

    ckpt = load_ckpt(first / "checkpoint.pth")
    for key in ("model", "optimizer", "lr_scheduler", "epoch", "args", "ema_model", "rng_state", "best_metric"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 0 and ckpt["args"].hidden_dim == 32

    args_all = json.loads((first / "config_args_all.json").read_text())
    assert args_all["hidden_dim"] == 32 and args_all["num_queries"] == 20
    raw = json.loads((first / "config_args_raw.json").read_text())
    assert "hidden_dim" not in raw and raw["options"]["hidden_dim"] == 32
    # progress display: plain lines (stdout is a pipe) with loss, lr, it/s and ETA
    progress = [line for line in proc.stdout.splitlines() if line.startswith("Epoch: [0] [")]
    assert len(progress) == 2, proc.stdout[-2000:]
    assert all("eta: " in line and " it/s" in line and "loss: " in line and "lr: " in line for line in progress)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in proc.stdout


def test_rerun_with_more_epochs_continues(stepwise):
    proc = load_proc(stepwise, "second")
    assert "Loaded checkpoint" in proc.stdout and "auto-resume, epoch 0" in proc.stdout
    assert "Start training at epoch 1 of 2" in proc.stdout
    assert "Epoch: [0]" not in proc.stdout and "Epoch: [1] [" in proc.stdout
    lines = epoch_lines(stepwise / "out" / "log.txt")
    assert [e["epoch"] for e in lines] == [0, 1]
    assert lines[0] == epoch_lines(stepwise / "after_first" / "log.txt")[0]
    assert load_ckpt(stepwise / "out" / "checkpoint.pth")["epoch"] == 1
    assert (stepwise / "out" / "checkpoint0001.pth").is_file()


def test_eval_of_explicit_checkpoint_prints_coco_table(tmp_path_factory, stepwise, tmp_path):
    """--eval --resume FILE evaluates FILE even when the output dir holds another checkpoint.pth
    (the original silently evaluated output_dir/checkpoint.pth instead)."""
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "eval_out"
    out.mkdir()
    shutil.copy(stepwise / "out" / "checkpoint.pth", out / "checkpoint.pth")  # epoch 1: must NOT be used
    wanted = stepwise / "after_first" / "checkpoint.pth"  # epoch 0
    proc = run(main_argv(coco, out, "--eval", "--resume", str(wanted)))
    assert proc.returncode == 0, describe(proc)
    assert f"Loaded checkpoint {wanted} (--resume, epoch 0)" in proc.stdout
    table = [line for line in proc.stdout.splitlines() if line.startswith((" Average Precision", " Average Recall"))]
    assert len(table) == 12, proc.stdout[-3000:]
    assert "Epoch: [" not in proc.stdout  # evaluation only
    entry = read_log(out / "log.txt")[-1]
    assert entry["mode"] == "eval" and entry["checkpoint"] == str(wanted) and entry["checkpoint_epoch"] == 0
    # the numbers are those of the epoch-0 model (the training run evaluated the same weights)
    trained = read_log(stepwise / "after_first" / "log.txt")[0]
    assert entry["test_coco_eval_bbox"] == trained["test_coco_eval_bbox"]
    assert entry["test_loss"] == pytest.approx(trained["test_loss"], rel=1e-5)


SCRIPTS = {
    "DINO_train.sh": ("python", ["COCO"]),
    "DINO_eval.sh": ("python", ["COCO", "ck.pth"]),
    "DINO_train_dist.sh": ("torchrun", ["COCO"]),
    "DINO_eval_dist.sh": ("torchrun", ["COCO", "ck.pth"]),
    "DINO_train_submitit.sh": ("python", ["COCO"]),
    "DINO_train_submitit_5scale.sh": ("python", ["COCO"]),
    "DINO_eval_submitit.sh": ("python", ["COCO", "ck.pth"]),
    "DINO_eval_submitit_5scale.sh": ("python", ["COCO", "ck.pth"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_scripts_build_valid_command_lines(script, tmp_path):
    """Each script, run with a stand-in for python/torchrun that records its arguments, gives a
    command line that main.py (or run_with_submitit.py) accepts, with the original --options
    and the extra arguments passed through."""
    import argparse

    import run_with_submitit
    from main import get_args_parser, load_config

    launcher, positional = SCRIPTS[script]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    for name in ("python", "torchrun"):
        shim = bin_dir / name
        shim.write_text(f"#!{PYTHON}\nimport json, sys\njson.dump([{name!r}] + sys.argv[1:], "
                        f"open({str(record)!r}, 'w'))\n")
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", GPUS="2")
    extra = ["--seed", "7"]
    proc = subprocess.run(["bash", f"scripts/{script}", *positional, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(record.read_text())
    assert argv[0] == launcher
    if launcher == "torchrun":
        assert argv[1] == "--nproc_per_node=2" and argv[2] == "main.py"
        argv = argv[3:]
        parser = argparse.ArgumentParser(parents=[get_args_parser()])
    elif argv[1] == "run_with_submitit.py":
        argv = argv[2:]
        parser = run_with_submitit.get_args_parser()
    else:
        assert argv[1] == "main.py"
        argv = argv[2:]
        parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(argv)
    assert args.coco_path == "COCO" and args.seed == 7
    assert args.options["dn_box_noise_scale"] == 1.0 and args.options["use_ema"] is False
    assert {"dn_scalar", "dn_label_coef", "dn_bbox_coef", "embed_init_tgt"} <= set(args.options)
    if "eval" in script:
        assert args.eval and args.resume == "ck.pth"
    if "submitit" in script:
        assert args.ngpus == 8 and args.timeout == 3000 and "%j" in args.job_dir
        assert args.nodes == (2 if "train_submitit_5scale" in script else 1)
    cfg, ignored = load_config(args)  # the options are valid for the config (legacy keys ignored)
    assert ignored == ["dn_bbox_coef", "dn_label_coef", "dn_scalar"]
    assert cfg["dn_box_noise_scale"] == 1.0
    assert cfg["num_feature_levels"] == (5 if "5scale" in script else 4)


def test_scripts_print_usage_without_arguments():
    proc = subprocess.run(["bash", "scripts/DINO_eval.sh"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_test_mode_writes_detections_json(tmp_path_factory, stepwise, tmp_path, capsys, one_thread):
    """--test: detections of every val image as a COCO results json (boxes x, y, w, h in pixels)."""
    import argparse

    from main import get_args_parser, run_cli

    coco = tiny_coco(tmp_path_factory)
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--coco_path", str(coco), "--output_dir", str(tmp_path), "--device", "cpu",
                              "--num_workers", "0", "--test", "--resume",
                              str(stepwise / "after_first" / "checkpoint.pth"), "--options", *TINY_OPTIONS])
    assert run_cli(args) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    images = json.loads((coco / "annotations" / "instances_val2017.json").read_text())["images"]
    assert {r["image_id"] for r in results} == {im["id"] for im in images}
    assert len(results) == len(images) * 20 * 4  # num_queries x num_classes candidates, all kept (num_select=300)
    sizes = {im["id"]: (im["width"], im["height"]) for im in images}
    for r in results:
        x, y, w, h = r["bbox"]
        width, height = sizes[r["image_id"]]
        assert -1 <= x <= width and -1 <= y <= height and 0 <= w <= width + 1 and 0 <= h <= height + 1
        assert 0 <= r["score"] <= 1 and r["category_id"] in range(4)


def test_optimizer_groups_are_logged(stepwise):
    out = load_proc(stepwise, "first").stdout
    assert "group 0: 105 tensors" in out and "lr 0.0001" in out
    assert "group 1: 5 tensors, 524288 parameters, lr 1e-05" in out  # the ResNet's layer2 (stem/layer1 frozen)


def test_train_one_epoch_in_process(one_thread):
    """engine.train_one_epoch on a two-batch loader: finite averaged stats, weights and EMA move;
    then again with --amp, which runs on the CPU (bfloat16 autocast)."""
    import argparse

    from engine import make_grad_scaler, train_one_epoch
    from helpers import make_targets, random_images
    from main import apply_config, build_model_main, get_args_parser, load_config
    from util.ema import ModelEma
    from util.get_param_dicts import get_param_dict
    from util.misc import nested_tensor_from_tensor_list

    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    args = parser.parse_args(["-c", CONFIG, "--device", "cpu", "--print_freq", "1", "--options", *TINY_OPTIONS])
    cfg, _ = load_config(args)
    apply_config(cfg, args)
    torch.manual_seed(0)
    model, criterion, _ = build_model_main(args)
    batches = [(nested_tensor_from_tensor_list(random_images([(64, 80), (72, 64)], seed=s)),
                tuple(make_targets([2, 1], num_classes=4, seed=s))) for s in range(2)]
    for _, targets in batches:
        for t in targets:
            t["labels"] = t["labels"].clamp(max=3)
    for amp in (False, True):
        args.amp = amp
        ema = ModelEma(model, 0.5)
        optimizer = torch.optim.AdamW(get_param_dict(args, model), lr=args.lr, weight_decay=args.weight_decay)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        stats = train_one_epoch(model, criterion, batches, optimizer, torch.device("cpu"), 0, args.clip_max_norm,
                                args=args, ema_m=ema, scaler=make_grad_scaler(torch.device("cpu"), amp))
        assert stats["loss"] > 0 and all(v == v for v in stats.values()), (amp, stats)  # no NaN
        assert "loss_bbox_unscaled" in stats and stats["lr"] == args.lr
        moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert any(k.startswith("transformer.") for k in moved)
        ema_moved = [k for k, v in ema.module.state_dict().items() if not torch.equal(v, before[k])]
        assert set(ema_moved) == set(moved)
