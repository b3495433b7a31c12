"""torch.export + AOTInductor packages (tools/export_onnx.py --format aoti, models/dino/export_aoti.py),
the torch-only runner (deploy/aoti_detector.py) and tools/inference.py --aoti.

One package is compiled per module (the demo config, seeded random weights; about 3 minutes of C++
compilation on 2 cores): the tool's gate has compared it with PyTorch at sizes other than the export
size, one by one and as a padded batch, and the tests below use it.
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from parity_support import fraction_of_rows_matched  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trust_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("trust") / "trusted.json"
    old = os.environ.get("DINO_TRUST_FILE")
    os.environ["DINO_TRUST_FILE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DINO_TRUST_FILE", None)
    else:
        os.environ["DINO_TRUST_FILE"] = old


def help_example(module, marker: str):
    """The argv of the one `python tools/...` example in `module`'s docstring that contains `marker`."""
    import shlex
    text = module.__doc__.replace("\\\n", " ")
    found = [shlex.split(line.strip())[2:] for line in text.splitlines()
             if line.strip().startswith("python tools/") and marker in line]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def package(tmp_path_factory, trust_file):
    """(model, postprocessor, args, package path, the tool's printout): the export tool's --help
    example, as written, in a miniature of the demo's layout (demo_output/, data/synthetic_shapes/)."""
    from datasets.synthetic import generate_synthetic_coco
    from helpers import build_export_demo_model
    from tools import export_onnx

    model, post, args = build_export_demo_model("num_classes=6", "dn_labelbook_size=6")
    root = tmp_path_factory.mktemp("aoti")
    generate_synthetic_coco(str(root / "data" / "synthetic_shapes"), num_train=1, num_val=2, num_classes=5,
                            min_size=96, max_size=128, seed=0)
    (root / "demo_output").mkdir()
    args.category_names = {1: "circle", 2: "square"}
    torch.save({"model": model.state_dict(), "args": args}, root / "demo_output" / "checkpoint.pth")
    argv = help_example(export_onnx, ".pt2")
    buffer = io.StringIO()
    here = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(buffer):
            code = export_onnx.main(argv)
    finally:
        os.chdir(here)
    assert code == 0, buffer.getvalue()
    return model, post["bbox"], args, root / "demo_output" / "dino_demo.pt2", buffer.getvalue()


def test_the_gate_passed_at_sizes_other_than_the_export_size(package):
    out, path = package[4], package[3]
    assert "as AOTInductor package" in out and "at 128x192" in out  # the demo's 128x160, padded to 64s
    checks = [line for line in out.splitlines() if "top-100 detections matched" in line]
    assert len(checks) == 4 and all(line.strip().startswith("ok") for line in checks), out
    padded = {line.split("padded to ")[1].split(")")[0] for line in checks}
    assert padded == {"192x192", "192x128"}  # neither is the export's 128x192; the batch of both pads to 192x192
    assert path.is_file() and not [p for p in os.listdir(path.parent) if p.startswith(".")]  # no temporary left


def padded_reference(model, meta):
    """A detector running the PyTorch model on input pre-processed and padded exactly as the runner's."""
    from deploy.common import ExportedDetector, pad_batch
    from util.misc import NestedTensor

    class TorchRun(ExportedDetector):
        def run(self, batch):
            images = torch.from_numpy(pad_batch(batch, 64, min_size=128))
            mask = torch.ones(images.shape[0], *images.shape[2:], dtype=torch.bool)
            for i, x in enumerate(batch):
                mask[i, :x.shape[1], :x.shape[2]] = False
            with torch.no_grad():
                out = model(NestedTensor(images, mask))
            return out["pred_logits"].numpy(), out["pred_boxes"].numpy()

    return TorchRun(meta)


def test_runner_needs_only_torch_and_gives_pytorchs_detections(package, tmp_path):
    """deploy/ copied alone beside the package, run in a fresh interpreter where this project's
    modules cannot be imported: the same detections as the PyTorch model given the same input."""
    from PIL import Image

    from deploy.aoti_detector import AotiDetector
    model, post, args, path, _ = package
    shutil.copytree(os.path.join(REPO, "deploy"), tmp_path / "deploy")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(70, 90), (95, 80)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).resize((w * 2, h * 2)).save(tmp_path / f"{i}.png")
    script = ("import json, sys; from deploy.aoti_detector import AotiDetector\n"
              f"d = AotiDetector({str(path)!r}, num_threads=2)\n"
              "r = d(['0.png', '1.png'], threshold=0.0)\n"
              "assert not [m for m in sys.modules if m.split('.')[0] in ('models', 'util', 'datasets', 'detector')]\n"
              "print(json.dumps({'names': d.category_names, 'r': [{k: v.tolist() for k, v in x.items()} for x in r]}))")
    env = dict(os.environ, PYTHONPATH="")
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["names"] == {"1": "circle", "2": "square"}
    reference = padded_reference(model, AotiDetector(str(path)).meta)
    for i, det in enumerate(got["r"]):
        [ref] = reference([str(tmp_path / f"{i}.png")], threshold=0.0)
        assert len(det["scores"]) == len(ref["scores"]) == args.num_select
        a = np.concatenate([ref["scores"][:, None], ref["labels"][:, None], ref["boxes"] / 100], 1)
        b = np.concatenate([np.array(det["scores"])[:, None], np.array(det["labels"])[:, None],
                            np.array(det["boxes"]) / 100], 1)
        assert fraction_of_rows_matched(torch.from_numpy(a), torch.from_numpy(b)) >= 0.95


def test_inference_tool_runs_the_package_it_exported_and_refuses_others(package, tmp_path, monkeypatch, capsys):
    from tools import inference
    path = package[3]
    root = path.parent.parent
    monkeypatch.chdir(root)  # the --help example, as written, on the demo layout
    assert inference.run_cli(help_example(inference, "--aoti") + ["--threshold", "0.0", "--quiet"]) == 0
    out = root / "demo_output" / "aoti"
    data = json.loads((out / "detections.json").read_text())
    assert data["checkpoint"] == str(path) and len(data["detections"]) == 2
    assert all(len(d["scores"]) >= 1 for d in data["detections"])
    assert len(list(out.glob("*.png"))) == 2 and data["category_names"] == {"1": "circle", "2": "square"}
    photos = root / "data" / "synthetic_shapes" / "val2017"

    copy = tmp_path / "elsewhere.pt2"  # the same bytes are trusted; a package changed by one byte is not
    data_bytes = bytearray(path.read_bytes())
    data_bytes[-1] ^= 1
    copy.write_bytes(bytes(data_bytes))
    capsys.readouterr()
    assert inference.run_cli(["--aoti", str(copy), "--images", str(photos), "--output_dir", str(tmp_path / "o2"),
                              "--quiet"]) != 0  # refused before any image is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not exported on this machine" in err[0] and "--trust_checkpoint" in err[0]
    assert not (tmp_path / "o2" / "detections.json").exists()
    assert inference.run_cli(["--aoti", str(path), "--images", str(photos), "--output_dir", str(tmp_path / "o3"),
                              "--amp", "--quiet"]) != 0  # settings of a checkpoint's model: refused, not ignored
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--amp applies to a checkpoint's model" in err[0]


def test_export_size_must_differ_from_the_check_sizes_once_padded(package, tmp_path, capsys):
    from tools.export_onnx import main as export_tool
    ckpt = package[3].parent / "checkpoint.pth"  # refused before anything is exported
    code = export_tool(["--checkpoint", str(ckpt), "--output", str(tmp_path / "x.pt2"), "--size", "128", "160",
                        "--check-sizes", "120", "150", "192", "128"])
    err = capsys.readouterr().err
    assert code != 0 and "once padded to multiples of 64" in err and not (tmp_path / "x.pt2").exists()


def test_package_with_the_compiled_operator_runs_where_the_operator_library_is_given(tmp_path):
    """--aoti-operator: the package calls torch.ops.dino.ms_deform_attn. In a fresh interpreter with
    deploy/ alone, it is refused with a sentence naming op_library= until the library is given, then
    it gives PyTorch's outputs at a size it was not exported at."""
    from helpers import build_tiny_model
    from models.dino.export import ExportWrapper
    from models.dino.export_aoti import export_aoti
    from models.dino.ops import _ext
    if _ext.get_extension() is None:
        pytest.skip(f"the compiled operator is not built: {_ext.extension_error()}")
    model, _, _ = build_tiny_model()
    model.eval()
    path = tmp_path / "tiny_op.pt2"
    export_aoti(model, str(path), torch.randn(2, 3, 128, 192), metadata={"num_select": 20}, operator=True)
    shutil.copytree(os.path.join(REPO, "deploy"), tmp_path / "deploy")
    image = torch.randn(1, 3, 192, 128, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "image.npy", image.numpy())
    script = ("import sys, importlib.util, numpy as np, torch; from deploy.aoti_detector import AotiDetector\n"
              "lib = sys.argv[1] or None\n"
              "if not lib and importlib.util.find_spec('MultiScaleDeformableAttention'):\n"
              "    print('REFUSED op_library= (an installed MultiScaleDeformableAttention serves instead)'); sys.exit(3)\n"
              "try:\n"
              f"    d = AotiDetector({str(path)!r}, op_library=lib)\n"
              "except RuntimeError as exc:\n"
              "    print('REFUSED', exc); sys.exit(3)\n"
              "logits, boxes = d.run([np.load('image.npy')[0]])\n"
              "np.save('logits.npy', logits); np.save('boxes.npy', boxes)")
    env = dict(os.environ, PYTHONPATH="")
    refused = subprocess.run([sys.executable, "-c", script, ""], cwd=tmp_path, capture_output=True, text=True,
                             env=env, timeout=600)
    assert refused.returncode == 3 and "op_library=" in refused.stdout, refused.stdout + refused.stderr[-1500:]
    ran = subprocess.run([sys.executable, "-c", script, _ext.extension_origin()], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr[-2000:]
    with torch.no_grad():
        ref_logits, ref_boxes = ExportWrapper(model)(image)
    assert np.abs(np.load(tmp_path / "logits.npy") - ref_logits.numpy()).max() < 1e-4
    assert np.abs(np.load(tmp_path / "boxes.npy") - ref_boxes.numpy()).max() < 1e-4


def test_exported_program_of_a_square_padding_vit_config_follows_portrait_and_landscape_images():
    """DINO-EVA pads every image to a square (pad_to_square) and its ViT builds rotary tables from the
    token grid: exported at a landscape size, the program must not keep that branch (a portrait image
    gave 0% matching rows before the square's side became torch.sym_max) nor hash a symbolic size (the
    rotary table cache). torch.export only (AOTInductor's C++ compile of this config takes minutes; the
    package was built and passed the tool's gate by hand, docs/EXPORT.md)."""
    pytest.importorskip("timm", reason="the EVA backbones are built from timm blocks")
    from helpers import build_args
    from main import build_model_main
    from models.dino.export import ExportWrapper
    from models.dino.export_aoti import export_program

    reduced = ["vit_depth=2", "vit_global_attn_indexes=[1]", "use_checkpoint=False", "backbone_pretrained=False",
               "enc_layers=1", "dec_layers=1", "num_queries=30", "dn_number=0", "pad_to_square=128"]
    torch.manual_seed(0)
    model, _, _ = build_model_main(build_args("config/detrex/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py",
                                              reduced))
    model.eval()
    program = export_program(model, torch.randn(2, 3, 192, 256)).module()  # batch 1 would be specialised
    g = torch.Generator().manual_seed(5)
    # images larger than pad_to_square, whose square is then their longer side: 256 here (16 tokens, one
    # 16-token window, as at the example's size; with a 192 px example, whose windows need padding, the
    # program's guard of that padding refused 256 px squares; the package exported at 768x1024 gave
    # PyTorch's outputs at squares of 640, 1024 and 1088 px, docs/EXPORT.md)
    for size in ((256, 192), (192, 256), (256, 128), (256, 256)):
        images = torch.randn(1, 3, *size, generator=g)
        with torch.no_grad():
            expected, got = ExportWrapper(model)(images), program(images)
        for name, want, have in zip(("pred_logits", "pred_boxes"), expected, got):
            torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-4, msg=lambda m, s=size, n=name: f"{s} {n}: {m}")
