"""The tools under faults and odd inputs: no silent loss, no silent success, no tracebacks.

Full disks and read-only folders are real: a small tmpfs in a private mount namespace
(`unshare -m`, as root); where that is not possible those tests are skipped, and the
write-error path is also driven in-process by a temporary name that points at /dev/full.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import save_tiny_checkpoint
from test_train_pipeline import REPO, cli_env, describe

PY = sys.executable


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny DINO saved as main.py saves it (optimizer state, args with class names)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), "data_aug_scales=[64]", "data_aug_max_size=96",
                                with_optimizer=True)


def noisy_image(path: Path, w: int = 200, h: int = 160, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def tool(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *map(str, argv)], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300, **kw)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, describe(proc)
    return lines[0]


_UNSHARE = None


def can_unshare() -> bool:
    global _UNSHARE
    if _UNSHARE is None:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt && umount /mnt"],
                               capture_output=True) if shutil.which("unshare") else None
        _UNSHARE = bool(probe is not None and probe.returncode == 0)
    return _UNSHARE


def in_small_tmpfs(folder: Path, size: str, argv, read_only: bool = False) -> subprocess.CompletedProcess:
    """Run argv with a fresh tmpfs of `size` mounted on `folder` (read-only if asked), privately."""
    if not can_unshare():
        pytest.skip("needs `unshare -m` and mount rights (root) for a real full / read-only file system")
    folder.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"
    if read_only:
        mount += f" && mount -o remount,ro {shlex.quote(str(folder))}"
    script = f"{mount} && exec {' '.join(shlex.quote(str(a)) for a in argv)}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=300)


# --------------------------------------------------------------------------- convert_checkpoint
def test_convert_never_replaces_its_input_through_a_symlinked_folder(tmp_path, checkpoint):
    src = tmp_path / "real" / "checkpoint.pth"
    src.parent.mkdir()
    shutil.copy(checkpoint, src)
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    before = sha(src)
    line = one_error_line(tool("tools/convert_checkpoint.py", src, tmp_path / "link" / "checkpoint.pth",
                               "--overwrite"))
    assert "is the input" in line
    assert sha(src) == before


def test_convert_output_rules(tmp_path, checkpoint):
    out = tmp_path / "out.pth"
    out.write_bytes(b"someone's file")
    assert "--overwrite" in one_error_line(tool("tools/convert_checkpoint.py", checkpoint, out))
    assert out.read_bytes() == b"someone's file"
    assert tool("tools/convert_checkpoint.py", checkpoint, out, "--overwrite").returncode == 0
    nested = tmp_path / "new" / "folder" / "out.safetensors"  # a missing folder is created
    proc = tool("tools/convert_checkpoint.py", checkpoint, nested)
    assert proc.returncode == 0 and nested.is_file(), describe(proc)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert "is a folder" in one_error_line(tool("tools/convert_checkpoint.py", checkpoint, folder))
    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    assert "is a file, not a folder" in one_error_line(tool("tools/convert_checkpoint.py", checkpoint,
                                                            blocked / "out.pth"))


def test_convert_on_a_full_disk_names_the_output(tmp_path, checkpoint):
    before = sha(checkpoint)
    disk = tmp_path / "disk"
    proc = in_small_tmpfs(disk, "256k", [PY, "tools/convert_checkpoint.py", checkpoint, disk / "out.pth"])
    line = one_error_line(proc)
    assert "could not write" in line and "out.pth" in line and "No space left on device" in line
    assert sha(checkpoint) == before


def test_convert_to_safetensors_on_a_full_disk_names_the_output(tmp_path, checkpoint):
    disk = tmp_path / "disk"
    proc = in_small_tmpfs(disk, "256k", [PY, "tools/convert_checkpoint.py", checkpoint, disk / "m.safetensors"])
    line = one_error_line(proc)
    assert "could not write" in line and "m.safetensors" in line and "No space left on device" in line


def test_convert_write_error_in_process(tmp_path, checkpoint, capsys):
    """The same path without a tmpfs: the temporary file points at /dev/full (ENOSPC on write)."""
    from tools.convert_checkpoint import main as convert
    out = tmp_path / "out.pth"
    os.symlink("/dev/full", tmp_path / f".out.pth.tmp-{os.getpid()}")
    assert convert([str(checkpoint), str(out)]) == 1
    err = capsys.readouterr().err
    assert "could not write" in err and "No space left on device" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.pth.tmp-*"))


def test_convert_keeps_settings_and_class_names(tmp_path, checkpoint):
    from detector import Detector
    for name in ("converted.pth", "converted.safetensors"):
        out = tmp_path / name
        proc = tool("tools/convert_checkpoint.py", checkpoint, out)
        assert proc.returncode == 0 and "4 class names" in proc.stdout, describe(proc)
        detector = Detector.from_checkpoint(str(out), device="cpu")  # no config needed
        assert detector.category_names == {1: "circle", 2: "square", 3: "triangle", 4: "star"}
        loaded = torch.load(out, weights_only=True) if name.endswith(".pth") else None
        if loaded is not None:
            assert loaded["args"]["category_names"][2] == "square"


# --------------------------------------------------------------------------- inference
def test_inference_full_disk_is_a_write_error_not_a_skipped_input(tmp_path, checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        noisy_image(photos / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    proc = in_small_tmpfs(out, "64k", [PY, "tools/inference.py", "--checkpoint", checkpoint, "--images", photos,
                                       "--output_dir", out, "--quiet"])
    line = one_error_line(proc)
    assert "could not write" in line and "No space left on device" in line
    assert "skipped" not in proc.stderr and "results in" not in proc.stdout


def test_inference_read_only_output_is_refused_before_the_model_runs(tmp_path, checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    noisy_image(photos / "a.png")
    out = tmp_path / "ro"
    proc = in_small_tmpfs(out, "1m", [PY, "tools/inference.py", "--checkpoint", checkpoint, "--images", photos,
                                      "--output_dir", out], read_only=True)
    line = one_error_line(proc)
    assert "cannot write in folder" in line and "Read-only file system" in line
    assert "model:" not in proc.stderr  # refused before the model was loaded


def test_inference_output_dir_that_is_a_file(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noisy_image(photos / "a.png")
    target = tmp_path / "results"
    target.write_text("not a folder")
    # the checkpoint does not exist: the output is checked first, so that is what is reported
    line = one_error_line(tool("tools/inference.py", "--checkpoint", tmp_path / "missing.pth", "--images", photos,
                               "--output_dir", target))
    assert "is a file, not a folder" in line and str(target) in line


@pytest.mark.parametrize("flag,value,words", [("--threshold", "2", "[0, 1]"), ("--threshold", "-1", "[0, 1]"),
                                              ("--topk", "0", "at least 1"), ("--nms", "1.5", "[0, 1]")])
def test_inference_refuses_values_that_cannot_be_meant(tmp_path, flag, value, words, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    import inference
    noisy_image(tmp_path / "a.png")
    code = inference.run_cli(["--checkpoint", str(tmp_path / "x.pth"), "--images", str(tmp_path / "a.png"),
                              "--output_dir", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0] and words in err[0]


def test_inference_removes_a_killed_runs_temporary_files(tmp_path, checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    noisy_image(photos / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".a_png.tmp-{int(dead.stdout)}.png"  # left by a run killed with -9
    stale.write_bytes(b"partial")
    live = out / f".b_png.tmp-{os.getpid()}.png"  # a process that still runs may be writing it
    live.write_bytes(b"in progress")
    proc = tool("tools/inference.py", "--checkpoint", checkpoint, "--images", photos, "--output_dir", out,
                "--quiet", "--overwrite")
    assert proc.returncode == 0, describe(proc)
    assert not stale.exists() and live.exists() and (out / "a_png.png").is_file()


def test_inference_names_damaged_and_empty_inputs(tmp_path, checkpoint):
    imageio = pytest.importorskip("imageio.v2")
    media = tmp_path / "media"
    media.mkdir()
    (media / "empty.jpg").write_bytes(b"")
    frames = [np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(40)]
    whole = tmp_path / "whole.mp4"
    writer = imageio.get_writer(whole, format="FFMPEG", fps=10, codec="libx264", macro_block_size=1,
                                ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
    for frame in frames:
        writer.append_data(frame)
    writer.close()
    data = whole.read_bytes()
    (media / "cut.mp4").write_bytes(data[: len(data) // 2])  # a download that broke off
    out = tmp_path / "out"
    proc = tool("tools/inference.py", "--checkpoint", checkpoint, "--images", media, "--output_dir", out, "--quiet")
    assert proc.returncode == 0, describe(proc)
    assert "empty (0 bytes)" in proc.stderr and "cut.mp4 is damaged" in proc.stderr
    result = json.loads((out / "detections.json").read_text())
    [video] = result["detections"]
    assert "of the 40 its header announces" in video["damaged"] and 0 < len(video["frames"]) < 40
    assert (out / "cut_mp4.mp4").is_file()
    assert [s["file"] for s in result["skipped"]] == [str(media / "empty.jpg")]


def test_odd_sized_video_keeps_its_size(tmp_path, checkpoint):
    imageio = pytest.importorskip("imageio.v2")
    video = tmp_path / "v" / "odd.mp4"
    video.parent.mkdir()
    writer = imageio.get_writer(video, format="FFMPEG", fps=5, codec="libx264", macro_block_size=1,
                                pixelformat="yuv444p", ffmpeg_log_level="error")
    for i in range(4):
        writer.append_data(np.full((121, 161, 3), 40 * i, np.uint8))
    writer.close()
    out = tmp_path / "out"
    proc = tool("tools/inference.py", "--checkpoint", checkpoint, "--images", video, "--output_dir", out, "--quiet")
    assert proc.returncode == 0, describe(proc)
    reader = imageio.get_reader(out / "odd_mp4.mp4", format="FFMPEG")
    assert reader.get_meta_data()["size"] == (161, 121)
    assert np.asarray(reader.get_data(0)).shape == (121, 161, 3)
    reader.close()


# --------------------------------------------------------------------------- Detector inputs
def test_detector_pixel_dtypes_follow_a_stated_rule(checkpoint):
    from detector import Detector, to_pil_image
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    reference = np.asarray(to_pil_image(image))
    np.testing.assert_array_equal(np.asarray(to_pil_image(image.astype(np.float32) / 255.0)), reference)
    np.testing.assert_array_equal(np.asarray(to_pil_image(image.astype(np.uint16) * 257)), reference)
    np.testing.assert_array_equal(np.asarray(to_pil_image(torch.from_numpy(image).permute(2, 0, 1))), reference)
    for bad, words in ((image.astype(np.float32), "[0, 1]"), (image.astype(np.int64), "dtype int64"),
                       (image > 127, "dtype bool")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            to_pil_image(bad)
    detector = Detector.from_checkpoint(str(checkpoint), device="cpu")
    for kwargs in ({"threshold": 2}, {"threshold": -0.1}, {"topk": 0}, {"nms": 1.5}):
        with pytest.raises(ValueError):
            detector(image, **kwargs)


# --------------------------------------------------------------------------- other tools
def test_plot_logs_names_a_line_that_is_not_utf8(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"epoch": e, "train_loss": 1.0 / (e + 1)}).encode() for e in range(3)]
    lines.insert(2, b'{"epoch": 9, "note": "\xff\xfe"}')
    (run / "log.txt").write_bytes(b"\n".join(lines) + b"\n")
    proc = tool("tools/plot_logs.py", run, "--out", tmp_path / "curves.png")
    assert proc.returncode == 0, describe(proc)
    assert "line 3: not UTF-8" in proc.stderr and (tmp_path / "curves.png").is_file()


def test_main_output_dir_that_is_a_file(tmp_path):
    target = tmp_path / "run"
    target.write_text("x")
    proc = subprocess.run([PY, "main.py", "-c", "config/DINO/DINO_4scale.py", "--coco_path", str(tmp_path),
                           "--output_dir", str(target), "--device", "cpu"], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    line = one_error_line(proc)
    assert proc.returncode == 2 and "is a file, not a folder" in line


def test_main_unexpected_error_is_one_line_with_the_traceback_in_the_log(tmp_path, monkeypatch, capsys):
    import main as main_module

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(main_module, "main", broken)
    (tmp_path / "info.txt").write_text("earlier log\n")
    args = main_module.get_args_parser().parse_args(["-c", "x.py", "--output_dir", str(tmp_path)])
    assert main_module.run_cli(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: boom" in err[0] and "--debug" in err[0] and "info.txt" in err[0]
    assert "Traceback" in (tmp_path / "info.txt").read_text()
    args.debug = True
    with pytest.raises(RuntimeError, match="boom"):
        main_module.run_cli(args)
