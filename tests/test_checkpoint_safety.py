"""Checkpoints are data: a file that carries a pickle payload never runs it, in any loader, from a
path or a URL; every kind of released checkpoint we support loads without --trust_checkpoint;
safetensors round trips give the .pth outputs."""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_args
from test_train_pipeline import REPO, cli_env, describe, tiny_coco

TINY = ["backbone=resnet18", "hidden_dim=32", "dim_feedforward=64", "enc_layers=1", "dec_layers=2",
        "num_queries=20", "dn_number=3", "nheads=2", "enc_n_points=2", "dec_n_points=2", "num_classes=5",
        "dn_labelbook_size=5", "backbone_pretrained=False", "data_aug_scales=[64]", "data_aug_max_size=96"]


class Payload:
    """Unpickling this calls os.makedirs(marker): the way a malicious file runs code on load."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def model_state():
    from main import build_model_main
    torch.manual_seed(0)
    args = tiny_args("data_aug_scales=[64]", "data_aug_max_size=96")
    args.category_names = {1: "circle", 2: "square", 3: "triangle", 4: "star"}
    return build_model_main(args)[0].state_dict(), args


@pytest.fixture
def evil(tmp_path, model_state):
    """(a checkpoint of the tiny model whose weights fit, plus a payload; the payload's marker)."""
    state, args = model_state
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pth"
    torch.save({"model": state, "args": args, "extra": Payload(str(marker))}, path)
    return path, marker


@contextlib.contextmanager
def http_server(folder: Path):
    """Serve `folder` on 127.0.0.1 (a port of its own) for the duration of the block."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_refused(message: str, path, marker: Path) -> None:
    assert not marker.exists(), "the payload ran"
    assert "\n" not in message.strip()
    assert "os.makedirs" in message and str(path) in message and "--trust_checkpoint" in message


# --------------------------------------------------------------------------- every loader refuses
@pytest.mark.parametrize("legacy", [False, True])
def test_load_checkpoint_refuses_the_payload(tmp_path, evil, legacy):
    from util.checkpoint import UntrustedCheckpointError, load_checkpoint
    path, marker = evil
    if legacy:  # torch.save's pre-1.6 format, which older releases use
        path = tmp_path / "legacy.pth"
        torch.save({"model": {}, "extra": Payload(str(marker))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(str(path), "--resume")
    assert_refused(str(info.value), path, marker)


def test_detector_refuses_the_payload(evil):
    from detector import Detector
    from util.checkpoint import UntrustedCheckpointError
    path, marker = evil
    with pytest.raises(UntrustedCheckpointError) as info:
        Detector.from_checkpoint(str(path), device="cpu")
    assert_refused(str(info.value), path, marker)


def test_pretrained_backbone_file_refuses_the_payload(tmp_path):
    from main import build_model_main
    from util.checkpoint import UntrustedCheckpointError
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra": Payload(str(marker))}, path)
    with pytest.raises(UntrustedCheckpointError) as info:
        build_model_main(tiny_args(f"pretrained_backbone_path={path}"))
    assert_refused(str(info.value), path, marker)


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_inference_tool_refuses_the_payload(tmp_path, evil, capsys):
    from PIL import Image

    sys.path.insert(0, str(REPO / "tools"))
    import inference
    path, marker = evil
    Image.new("RGB", (64, 48), (20, 90, 150)).save(tmp_path / "a.png")
    code = inference.run_cli(["--checkpoint", str(path), "--images", str(tmp_path / "a.png"),
                              "--output_dir", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert_refused(_one_line(capsys.readouterr().err), path, marker)


def test_converters_refuse_the_payload(tmp_path, evil, capsys):
    from tools.convert_14to16 import main as convert_14to16
    from tools.convert_checkpoint import main as convert
    path, marker = evil
    assert convert([str(path), str(tmp_path / "out.safetensors")]) == 1
    assert_refused(_one_line(capsys.readouterr().err), path, marker)
    assert convert_14to16([str(path), "-o", str(tmp_path / "out16.pth")]) == 1
    assert_refused(_one_line(capsys.readouterr().err), path, marker)
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "out16.pth").exists()


def test_export_tool_refuses_the_payload(tmp_path, evil, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tools.export_onnx import main as export
    path, marker = evil
    assert export(["--checkpoint", str(path), "--output", str(tmp_path / "m.onnx")]) != 0
    assert_refused(_one_line(capsys.readouterr().err), path, marker)


def test_url_refuses_the_payload_and_never_mixes_up_two_files_of_one_name(tmp_path, evil, model_state,
                                                                        monkeypatch):
    """--resume http://...: downloaded into torch.hub's cache (TORCH_HOME) and read as data. Two
    servers serving files of the same name are two cache entries (once, a later URL whose file had
    the same name silently loaded the earlier download)."""
    from util.checkpoint import UntrustedCheckpointError, load_checkpoint
    path, marker = evil
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    good = tmp_path / "good"
    good.mkdir()
    torch.save({"model": {"w": torch.ones(2)}}, good / "evil.pth")  # same name, harmless
    with http_server(path.parent) as bad_url, http_server(good) as good_url:
        assert list(load_checkpoint(f"{good_url}/evil.pth")["model"]) == ["w"]
        with pytest.raises(UntrustedCheckpointError) as info:
            load_checkpoint(f"{bad_url}/evil.pth", "--resume")
        assert_refused(str(info.value), f"{bad_url}/evil.pth", marker)
        assert list(load_checkpoint(f"{good_url}/evil.pth")["model"]) == ["w"]  # from the cache
        from util.checkpoint import CheckpointError
        with pytest.raises(CheckpointError, match="download failed .*404"):
            load_checkpoint(f"{good_url}/missing.pth")


@pytest.mark.parametrize("flag", ["--resume", "--pretrain_model_path"])
def test_main_refuses_the_payload(tmp_path_factory, tmp_path, evil, flag):
    path, marker = evil
    coco = tiny_coco(tmp_path_factory)
    argv = [sys.executable, "main.py", "-c", "config/DINO/DINO_4scale.py", "--coco_path", str(coco),
            "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "out"), flag, str(path),
            "--options", *TINY]
    if flag == "--resume":
        argv.append("--eval")
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, describe(proc)
    assert_refused(_one_line(proc.stderr), path, marker)


def test_trust_flag_is_the_only_way_and_it_runs_the_file(evil, tmp_path, capsys):
    """--trust_checkpoint loads the file (running its code: the marker appears); converting it then
    gives a safetensors file that loads without the flag and holds the same weights."""
    from tools.convert_checkpoint import main as convert
    from util.checkpoint import load_checkpoint
    path, marker = evil
    out = tmp_path / "safe.safetensors"
    assert convert([str(path), str(out), "--trust_checkpoint"]) == 0
    assert marker.exists()
    marker.rmdir()
    original = load_checkpoint(str(path), trust=True)["model"]
    assert marker.exists()
    safe = load_checkpoint(str(out))["model"]
    assert sorted(safe) == sorted(original) and all(torch.equal(safe[k], original[k]) for k in original)


# --------------------------------------------------------------------------- released kinds load
def _optimizer_and_schedule():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=1e-4)
    p.grad = torch.ones(3)
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [11])
    return opt.state_dict(), sched.state_dict()


def _kinds():
    """(name, object saved the way that code base saves it, legacy format?) for each kind users load."""
    weights = OrderedDict([("class_embed.0.weight", torch.ones(2, 3)), ("class_embed.0.bias", torch.zeros(2))])
    optim, sched = _optimizer_and_schedule()
    dino_args = argparse.Namespace(lr=1e-4, lr_drop_list=[33, 45], data_aug_scales=[480, 512], options={"a": 1},
                                   frozen_weights=None, device="cuda", dn_box_noise_scale=1.0)
    return [
        # IDEA-Research/DINO main.py: utils.save_on_master({...}) with the run's args
        ("original DINO", {"model": weights, "optimizer": optim, "lr_scheduler": sched, "epoch": 11,
                           "args": dino_args, "ema_model": weights}, False),
        # detrex / detectron2: fvcore Checkpointer.save: model + trainer state (+ ema_state with EMA)
        ("detrex", {"model": weights, "trainer": {"iteration": 89999, "hooks": {"LRScheduler": {
            "base_lrs": [1e-4], "last_epoch": 90000}}, "optimizer": optim, "grad_scaler": {"scale": 65536.0}},
            "iteration": 89999, "ema_state": weights}, False),
        ("detectron2 (2019, scheduler)", {"model": weights, "optimizer": optim, "scheduler": sched,
                                          "iteration": 5}, False),
        # mmcv save_checkpoint (ViT-Adapter), published with the legacy serialization
        ("ViT-Adapter / mmcv", {"meta": {"mmcv_version": "1.4.2", "config": "model = dict(...)",
                                         "CLASSES": ("person", "car"), "epoch": 36, "iter": 12,
                                         "hook_msgs": {"last_ckpt": "x.pth", "best_score": np.float64(0.5)},
                                         "seed": 42, "env_info": "sys.platform: linux"},
                                "state_dict": weights, "optimizer": optim}, True),
        # EVA / deepspeed, MAE / DeiT / ConvNeXt (args), DINOv2 / timm / torchvision (plain)
        ("EVA (deepspeed)", {"module": weights}, False),
        ("MAE / DeiT / ConvNeXt", {"model": weights, "optimizer": optim, "epoch": 799, "scaler": {"scale": 1.0},
                                   "args": argparse.Namespace(model="vit_base", blr=1.5e-4)}, False),
        ("DINOv2 / timm / torchvision", weights, False),
        ("numpy weights (detectron2 converted)", {"model": {"w": np.zeros((2, 3), np.float32)},
                                                  "__author__": "x", "matching_heuristics": True}, False),
    ]


@pytest.mark.parametrize("name,obj,legacy", _kinds(), ids=[k[0] for k in _kinds()])
def test_every_supported_kind_loads_without_the_flag(tmp_path, name, obj, legacy):
    from util.weights_io import read_weights_file
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    loaded = read_weights_file(str(path), "checkpoint")
    assert type(loaded) is type(obj) or isinstance(loaded, dict)
    if isinstance(obj, dict) and "args" in obj:
        assert vars(loaded["args"]) == vars(obj["args"])
    if name.startswith("ViT-Adapter"):
        assert loaded["meta"]["hook_msgs"]["best_score"] == 0.5 and loaded["meta"]["CLASSES"] == ("person", "car")


@pytest.mark.parametrize("container", ["model", "state_dict", "module", None])
def test_backbone_reader_takes_each_container(tmp_path, container):
    from models.dino.backbones.pretrained import read_checkpoint
    weights = {"module.conv1.weight": torch.ones(1), "bn1.bias": torch.zeros(1)}
    path = tmp_path / "backbone.pth"
    torch.save({container: weights, "args": argparse.Namespace(x=1)} if container else weights, path)
    assert sorted(read_checkpoint(str(path))) == ["bn1.bias", "conv1.weight"]


# --------------------------------------------------------------------------- safetensors
def test_safetensors_round_trip_gives_the_pth_detections(tmp_path, model_state):
    """main.py's kind of checkpoint (args with class names inside), converted to .safetensors:
    Detector.from_checkpoint needs nothing else and gives the .pth's detections exactly; the
    decoder heads DINO shares under two names come back under both."""
    from detector import Detector
    from tools.convert_checkpoint import main as convert
    state, args = model_state
    pth, sft = tmp_path / "checkpoint.pth", tmp_path / "model.safetensors"
    torch.save({"model": state, "args": args, "epoch": 3}, pth)
    assert convert([str(pth), str(sft)]) == 0
    image = np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    a = Detector.from_checkpoint(str(pth), device="cpu")
    b = Detector.from_checkpoint(str(sft), device="cpu")
    assert b.category_names == args.category_names and "settings stored" in b.settings_source
    ra, rb = a(image, threshold=0.0), b(image, threshold=0.0)
    assert len(ra.scores) > 0
    np.testing.assert_array_equal(ra.scores, rb.scores)
    np.testing.assert_array_equal(ra.boxes, rb.boxes)
    assert ra.names == rb.names
    from util.checkpoint import load_checkpoint
    loaded = load_checkpoint(str(sft))
    assert sorted(loaded["model"]) == sorted(state)
    assert loaded["args"]["category_names"] == args.category_names  # int keys kept
    assert loaded["args"]["data_aug_scales"] == list(args.data_aug_scales)


def test_safetensors_through_main_eval(tmp_path_factory, tmp_path, model_state):
    """main.py --eval --resume X.safetensors (the settings in its metadata, the weights strict)."""
    from util.weights_io import safetensors_bytes
    state, args = model_state
    coco = tiny_coco(tmp_path_factory)
    sft = tmp_path / "w.safetensors"
    sft.write_bytes(safetensors_bytes(state, {"args": vars(args)}))
    base = [sys.executable, "main.py", "-c", "config/DINO/DINO_4scale.py", "--coco_path", str(coco), "--device",
            "cpu", "--num_workers", "0"]
    proc = subprocess.run(base + ["--output_dir", str(tmp_path / "eval"), "--eval", "--resume", str(sft),
                                  "--options", *TINY], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "Average Precision" in proc.stdout, describe(proc)
