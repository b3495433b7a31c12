"""The model zoo by name (config/model_zoo.json, util/zoo.py): the registry holds every row of the
zoo tables with a config that exists here; a name works wherever a checkpoint path does
(Detector.from_pretrained, main.py --resume without -c, tools/inference.py --model,
tools/export_onnx.py --model, backbone files); the weights folder is looked in first and checked;
tools/fetch_weights.py fills a folder for machines without network."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import REPO, TINY_OPTIONS, FileServer, build_args

TINY = TINY_OPTIONS + ["data_aug_scales=[64]", "data_aug_max_size=96"]


def parsed(options):
    from util.slconfig import parse_option_value
    return {k: parse_option_value(v) for k, v in (o.split("=", 1) for o in options)}


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "DINO_WEIGHTS_DIR",
                "DINO_MODEL_ZOO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """Bytes of two tiny released-style files: a detrex-layout R18 DINO (80 COCO classes, no recorded
    settings) and this project's tiny DINO (5 classes, weights only)."""
    from main import build_model_main
    from test_detrex_checkpoints import TINY as DETREX_TINY
    from test_detrex_checkpoints import tiny_detrex_checkpoint
    folder = tmp_path_factory.mktemp("zoo_files")
    tiny_detrex_checkpoint(folder / "detrex.pth", num_classes=80)
    torch.manual_seed(0)
    torch.save({"model": build_model_main(build_args("config/DINO/DINO_4scale.py", TINY))[0].state_dict()},
               folder / "tiny.pth")
    detrex_options = parsed(DETREX_TINY + ["num_classes=80", "dn_labelbook_size=80"])
    return {"detrex": (folder / "detrex.pth").read_bytes(), "tiny": (folder / "tiny.pth").read_bytes(),
            "detrex_options": detrex_options}


def write_registry(folder: Path, server_url: str, files) -> Path:
    """A registry of the tiny models served by the test's server ($DINO_MODEL_ZOO adds it)."""
    from test_detrex_checkpoints import CONFIG
    models = [
        {"name": "tiny_detrex_r18", "kind": "detector", "backbone": "R-18", "box_ap": 1.5, "classes": "coco",
         "config": os.path.join(REPO, CONFIG), "options": files["detrex_options"], "file": "tiny_detrex_r18.pth",
         "urls": [f"{server_url}/releases/tiny_detrex_r18.pth"], "size": len(files["detrex"]), "sha256": None},
        {"name": "tiny_dino_r18", "kind": "detector", "backbone": "R-18", "box_ap": 0.5,
         "config": "config/DINO/DINO_4scale.py", "options": parsed(TINY), "file": "tiny_dino_r18.pth",
         "urls": [f"{server_url}/releases/tiny_dino_r18.pth"]},
        {"name": "tiny_backbone_r18", "kind": "backbone", "backbone": "R-18", "file": "tiny_backbone_r18.pth",
         "urls": [f"{server_url}/releases/tiny_backbone_r18.pth"], "use": "--options pretrained_backbone_path=X"},
    ]
    path = folder / "my_zoo.json"
    path.write_text(json.dumps({"models": models}))
    return path


@pytest.fixture
def zoo(clean_env, tiny_files, monkeypatch):
    """The tiny models on a local server, registered through $DINO_MODEL_ZOO."""
    from util.zoo import REPO as ZOO_REPO
    assert ZOO_REPO == REPO
    with FileServer({"/releases/tiny_detrex_r18.pth": tiny_files["detrex"],
                     "/releases/tiny_dino_r18.pth": tiny_files["tiny"]}) as server:
        monkeypatch.setenv("DINO_MODEL_ZOO", str(write_registry(clean_env, server.url, tiny_files)))
        yield server


# --------------------------------------------------------------------------- the registry
def test_registry_entries_are_complete_and_their_configs_exist():
    from util.zoo import available_models, registry
    entries = registry()
    assert len(entries) >= 60 and "dino_r50_4scale_12ep" in available_models("detector")
    files = [e.file for e in entries.values() if e.file]
    assert len(files) == len(set(files)), "two entries share a file name: a weights folder would confuse them"
    for e in entries.values():
        assert e.kind in ("detector", "backbone") and e.backbone, e.name
        assert e.config is None or os.path.isfile(e.config_path), (e.name, e.config)
        if e.kind == "detector":
            assert e.classes == "coco" and e.box_ap and e.epochs, e.name
            assert e.config or "not in this project" in (e.notes or ""), e.name
        assert e.urls or e.how_to_get or "not released" in (e.notes or ""), e.name
        assert all(u.startswith("https://") for u in e.urls), e.name
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name


def test_registry_has_every_row_of_the_model_zoo_tables():
    """docs/MODEL_ZOO.md names each row's model; the registry agrees on its config, AP and URL."""
    from util.zoo import registry
    entries = registry()
    text = Path(REPO, "docs", "MODEL_ZOO.md").read_text()
    rows, in_zoo_table = [], False
    for line in text.splitlines():
        in_zoo_table = line.startswith("| Name |") or (in_zoo_table and line.startswith("|"))
        if in_zoo_table and re.match(r"^\| `[\w.-]+` \|", line):
            rows.append(line)
    assert len(rows) >= 60
    for row in rows:
        name = re.match(r"^\| `([\w.-]+)`", row).group(1)
        assert name in entries, name
        entry = entries[name]
        if entry.box_ap is not None:
            assert f"| {entry.box_ap:.1f}" in row, (name, entry.box_ap)
        if entry.config:
            assert os.path.basename(entry.config)[:-3] in row, (name, entry.config)
        for url in entry.urls:
            assert url in row or "drive.google.com" in url, (name, url)
    assert {re.match(r"^\| `([\w.-]+)`", r).group(1) for r in rows} == set(entries)


def test_unknown_names_are_refused_with_the_close_ones():
    from util.zoo import ZooError, get_entry
    with pytest.raises(ZooError) as info:
        get_entry("dino_r50_4scale_12")
    assert "dino_r50_4scale_12ep" in str(info.value) and "--list" in str(info.value)


def test_a_path_always_wins_over_a_name(tmp_path, monkeypatch):
    from util.zoo import zoo_model
    assert zoo_model("dino_r50_4scale_12ep").name == "dino_r50_4scale_12ep"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dino_r50_4scale_12ep").write_bytes(b"x")
    assert zoo_model("dino_r50_4scale_12ep") is None


def test_backbones_and_models_without_a_config_are_refused_by_from_pretrained(clean_env, monkeypatch):
    """Every released detector has a config now (the EVA-01 of projects/dino got detrex's); a team's
    registry entry without one is refused before anything is downloaded."""
    from detector import Detector
    from util.zoo import ZooError, detector_config, registry
    with pytest.raises(ZooError, match="backbone file, not a detector"):
        Detector.from_pretrained("dinov2_vits14_pretrain")
    assert detector_config(registry()["dino_eva_01_4scale_12ep"]).endswith("config/detrex/dino_eva_01_4scale_12ep.py")
    team = clean_env / "team_zoo.json"
    team.write_text(json.dumps({"models": [{"name": "team_model", "kind": "detector", "backbone": "R-50",
                                            "box_ap": 1.0, "classes": "coco", "epochs": 1, "config": None,
                                            "file": "team_model.pth", "urls": ["https://example.invalid/t.pth"],
                                            "notes": "its config is not in this project"}]}))
    monkeypatch.setenv("DINO_MODEL_ZOO", str(team))
    with pytest.raises(ZooError, match="no config in this project"):
        Detector.from_pretrained("team_model")


def test_a_registry_with_a_typo_is_named():
    from util.zoo import ZooError, _entry
    with pytest.raises(ZooError, match="unknown key.*urlz"):
        _entry({"name": "x", "urlz": []}, "my_zoo.json", 0)


# --------------------------------------------------------------------------- by name, end to end
def test_from_pretrained_downloads_once_and_detects_with_coco_names(zoo, clean_env):
    from detector import Detector
    from util.class_transfer import COCO_CATEGORIES
    assert "tiny_detrex_r18" in Detector.available_models()
    detector = Detector.from_pretrained("tiny_detrex_r18", device="cpu")
    result = detector(Image.new("RGB", (120, 90), (90, 140, 60)), threshold=0.0, topk=20)
    coco = dict(COCO_CATEGORIES)
    assert len(result) == 20 and all(coco[int(c)] == n for c, n in zip(result.labels, result.names))
    Detector.from_pretrained("tiny_detrex_r18", device="cpu")
    assert zoo.gets("/releases/tiny_detrex_r18.pth") == 1  # the second time from the cache
    [info] = [d for d in Detector.available_models(details=True) if d["name"] == "tiny_detrex_r18"]
    assert info["here"] == "cached" and info["box_ap"] == 1.5 and info["sha256"]


def test_the_weights_folder_is_looked_in_first_and_checked(zoo, clean_env, tiny_files, monkeypatch):
    from detector import Detector
    from util.checkpoint import CheckpointError
    folder = clean_env / "weights"
    folder.mkdir()
    (folder / "tiny_detrex_r18.pth").write_bytes(tiny_files["detrex"])
    monkeypatch.setenv("DINO_WEIGHTS_DIR", str(folder))
    Detector.from_pretrained("tiny_detrex_r18", device="cpu")
    assert zoo.gets("/releases/tiny_detrex_r18.pth") == 0
    (folder / "SHA256SUMS").write_text("0" * 64 + "  tiny_detrex_r18.pth\n")  # a damaged copy
    with pytest.raises(CheckpointError) as info:
        Detector.from_pretrained("tiny_detrex_r18", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "tiny_detrex_r18.pth" in message and "SHA256SUMS" in message


def test_a_failed_download_by_name_says_what_to_get_and_where_to_put_it(zoo, clean_env):
    from detector import Detector
    from util.checkpoint import CheckpointError
    del zoo.files["/releases/tiny_dino_r18.pth"]
    with pytest.raises(CheckpointError) as info:
        Detector.from_pretrained("tiny_dino_r18", device="cpu")
    message = str(info.value)
    assert "\n" not in message and f"{zoo.url}/releases/tiny_dino_r18.pth" in message and "404" in message
    assert "get tiny_dino_r18.pth from" in message and "--weights_dir DIR" in message
    assert not list((clean_env / "torch_home").rglob("tiny_dino_r18.pth"))


def test_backbone_file_by_name(zoo, clean_env, tiny_files):
    """pretrained_backbone_path=NAME: the reader fetches the released file."""
    from models.dino.backbones.pretrained import read_checkpoint
    zoo.files["/releases/tiny_backbone_r18.pth"] = tiny_files["tiny"]
    state = read_checkpoint("tiny_backbone_r18")
    assert any(k.startswith("backbone.0.") for k in state)


def test_main_evaluates_a_model_by_name_without_a_config(zoo, clean_env, tmp_path_factory):
    from test_train_pipeline import cli_env, describe, tiny_coco
    coco = tiny_coco(tmp_path_factory)
    env = cli_env(DINO_MODEL_ZOO=os.environ["DINO_MODEL_ZOO"], TORCH_HOME=os.environ["TORCH_HOME"])
    proc = subprocess.run([sys.executable, "main.py", "--coco_path", str(coco), "--device", "cpu", "--num_workers",
                           "0", "--output_dir", str(clean_env / "eval"), "--eval", "--resume", "tiny_dino_r18"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Average Precision" in proc.stdout, describe(proc)
    assert zoo.gets("/releases/tiny_dino_r18.pth") == 1
    proc = subprocess.run([sys.executable, "main.py", "--coco_path", str(coco), "--eval"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: -c CONFIG is needed"), describe(proc)


def test_pretrain_model_path_name_gives_the_config_and_its_preset():
    from util.zoo import settings_for_names
    config, preset = settings_for_names(None, "dino_swin_large_384_4scale_36ep")
    assert config == os.path.join(REPO, "config/detrex/dino_swin_large_384_4scale_36ep.py") and preset == {}


def test_export_tool_takes_a_name(zoo, clean_env):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tools.export_onnx import main as export
    out = clean_env / "tiny.onnx"
    assert export(["--model", "tiny_dino_r18", "--output", str(out), "--no-check"]) == 0
    assert out.is_file()
    assert export(["--model", "tiny_backbone_r18", "--output", str(clean_env / "b.onnx")]) == 2


# --------------------------------------------------------------------------- tools/fetch_weights.py
def test_fetch_weights_fills_a_folder_keeps_what_it_holds_and_lists(zoo, clean_env, capsys):
    from tools.fetch_weights import main as fetch
    folder = clean_env / "weights"
    assert fetch(["tiny_dino_r18", "tiny_detrex_r18", "--dir", str(folder)]) == 0
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in sums) == ["tiny_detrex_r18.pth", "tiny_dino_r18.pth"]
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True).returncode == 0
    assert fetch(["tiny_dino_r18", "--dir", str(folder)]) == 0
    assert "kept" in capsys.readouterr().out and zoo.gets("/releases/tiny_dino_r18.pth") == 1
    assert fetch(["--list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"tiny_detrex_r18\s+detector\s+R-18\s+1\.5\s+\S+ MiB\s+cached", listing), listing
    assert re.search(r"dino_r50_4scale_12ep\s+detector\s+R-50 \(IN1k\)\s+49\.2\s+\?", listing), listing


def test_fetch_weights_reports_each_failure_in_one_line_and_goes_on(zoo, clean_env, capsys):
    from tools.fetch_weights import main as fetch
    del zoo.files["/releases/tiny_dino_r18.pth"]
    assert fetch(["tiny_dino_r18", "tiny_detrex_r18", "--dir", str(clean_env / "w")]) == 1
    out, err = capsys.readouterr()
    [line] = [x for x in err.splitlines() if x.startswith("error")]  # (the rest: the other file's progress)
    assert line.startswith("error: tiny_dino_r18: ") and "404" in line
    assert (clean_env / "w" / "tiny_detrex_r18.pth").is_file() and "1 of 2 fetched" in out
    assert fetch(["no_such_model"]) == 2 and "not a released model" in capsys.readouterr().err
    (clean_env / "file").write_text("x")
    assert fetch(["tiny_dino_r18", "--dir", str(clean_env / "file")]) == 2


def _doc_examples(module, tool: str):
    import shlex
    text = module.__doc__.replace("\\\n", " ")
    return [shlex.split(line.strip())[2:] for line in text.splitlines()
            if line.strip().startswith(f"python tools/{tool}")]


def test_fetch_weights_help_examples_run_as_written(clean_env, monkeypatch, capsys):
    """Every example of the tool's help, with the network replaced by a small file per URL (the
    downloads themselves are tested above)."""
    import tools.fetch_weights as tool
    import util.zoo
    payload = clean_env / "payload.pth"
    payload.write_bytes(b"PK-not-really")
    asked = []
    monkeypatch.setattr(util.zoo, "_download", lambda entry, url: asked.append(url) or str(payload))
    monkeypatch.chdir(clean_env)
    examples = _doc_examples(tool, "fetch_weights.py")
    assert len(examples) == 4
    for argv in examples:
        assert tool.main(argv) == 0, argv
    folder = clean_env / "weights"
    assert (folder / "dino_swin_large_384_4scale_36ep.pth").is_file()
    with_links = [e for e in util.zoo.registry().values() if e.urls]
    assert len(list(folder.glob("*.p*"))) == len(with_links)
    assert "not fetched (no download link): dino_r50_4scale_12ep_amp" in capsys.readouterr().out


# --------------------------------------------------------------------------- the documented by-name path
@pytest.fixture(scope="module")
def r50_weights_folder(tmp_path_factory):
    """A weights folder holding a random-weight stand-in for dino_r50_4scale_12ep's file (the real one
    cannot be downloaded here), so the documented commands run as written."""
    from main import build_model_main
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = build_model_main(build_args("config/detrex/dino_r50_4scale_12ep.py"))[0]
    torch.save({"model": model.state_dict()}, folder / "dino_r50_4scale_12ep_49_2AP.pth")
    return folder


def test_inference_by_name_runs_as_its_help_says(r50_weights_folder, clean_env, monkeypatch):
    from tools import inference
    monkeypatch.setenv("DINO_WEIGHTS_DIR", str(r50_weights_folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
    monkeypatch.chdir(clean_env)
    (clean_env / "photos").mkdir()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(clean_env / "photos" / "a.jpg")
    [argv] = [a for a in _doc_examples(inference, "inference.py") if "--model" in a]
    assert inference.run_cli(argv + ["--quiet", "--device", "cpu"]) == 0
    data = json.loads((clean_env / "out" / "detections.json").read_text())
    assert data["checkpoint"] == "dino_r50_4scale_12ep" and len(data["category_names"]) == 80


def test_readme_quick_start_by_name(r50_weights_folder, clean_env, monkeypatch):
    from detector import Detector
    readme = Path(REPO, "README.md").read_text()
    assert 'Detector.from_pretrained("dino_r50_4scale_12ep"' in readme
    monkeypatch.setenv("DINO_WEIGHTS_DIR", str(r50_weights_folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    detector = Detector.from_pretrained("dino_r50_4scale_12ep", device="cpu")
    assert detector.args.num_classes == 80 and detector.category_names[1] == "person"
