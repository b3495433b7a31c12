#!/usr/bin/env python
"""Export a DINO checkpoint to ONNX and check the exported graph against PyTorch.

    python tools/export_onnx.py --checkpoint demo_output/checkpoint.pth --output demo_output/dino_demo.onnx
    python tools/export_onnx.py -c config/DINO/DINO_demo.py --checkpoint demo_output/checkpoint.pth \\
        --output demo_output/dino_demo_post.onnx --postprocess --val data/synthetic_shapes --val-images 20
    python tools/export_onnx.py -c config/DINO/DINO_demo.py --checkpoint demo_output/checkpoint.pth \\
        --output demo_output/dino_demo.onnx --overwrite --size 160 224 --check-sizes 128 160 192 144

An AOTInductor package instead of ONNX (torch.export + AOTInductor; run by torch alone with
deploy/aoti_detector.py or `tools/inference.py --aoti`; image sizes padded to multiples of 64):

    python tools/export_onnx.py --checkpoint demo_output/checkpoint.pth --output demo_output/dino_demo.pt2

A released model by name (`python tools/fetch_weights.py --list`), its config from the model zoo:

    python tools/export_onnx.py --model dino_r50_4scale_12ep --output dino_r50_4scale_12ep.onnx

Run the result without PyTorch (numpy, pillow and onnxruntime only):

    python -c "from deploy.onnx_detector import OnnxDetector; import glob; \\
        print(OnnxDetector('demo_output/dino_demo.onnx')(sorted(glob.glob('data/synthetic_shapes/val2017/*'))[:2], threshold=0.3))"

The graph (opset 18, plain ONNX ops, docs/EXPORT.md):
  input   images       float32 [N, 3, H, W], ImageNet-normalized RGB; N, H, W dynamic. Images of
                       different sizes are zero-padded at the bottom/right (as PyTorch batches them);
                       the graph takes its padding mask from those zeros.
  outputs pred_logits  [N, Q, C] and pred_boxes [N, Q, 4] (normalized cx, cy, w, h), as the PyTorch model.
  --postprocess adds the input orig_sizes int64 [N, 2] (h, w) and the outputs scores [N, K],
  labels [N, K] int64 and boxes [N, K, 4] (xyxy pixels of orig_sizes): PostProcess's top K=num_select
  (no NMS, no clipping; deploy/onnx_detector.py applies those when the config asks for them).

The check (skipped with --no-check): ONNX Runtime (CPU) and the PyTorch model run the same
images at two sizes other than the export size, batch 1 each and batch 2 of both (padded); it
prints the largest difference of logits and boxes, the share of query rows and of the top-100
detections that agree (rows matched as sets, as the parity checker does), and the model is
written only when they agree (exit status 1 otherwise). --val COCODIR also prints COCO box AP
of ONNX Runtime beside PyTorch's on that folder's val2017 split. An AOTInductor package is
checked the same way, loaded in this process, on the images padded to multiples of 64 (the
sizes it runs at; each check size must pad to a size other than the export size's).

Graphs over protobuf's 2 GB (EVA-01 / ViT-g) keep their weights in OUTPUT.data beside the graph
(ONNX external data, loaded by ONNX Runtime from the same folder); --external-data asks for that
for any model. The output is written atomically (a temporary folder beside it, then renames: the
data file first, the graph last); an existing file is refused unless --overwrite, and the output
may never be the config or the checkpoint.
Errors are one line and a non-zero exit status; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from util.atomic import check_output_file, tmp_path_for, write_error  # noqa: E402

ROW_TOL = 1e-3            # as ../shared/parity/check.py: |a - b| <= tol * (1 + max|a|, |b|)
MIN_ROWS_MATCHED = 0.90   # query rows (near-ties in query selection may reorder a few)
MIN_TOP100_MATCHED = 0.95  # detections that count


class ExportError(RuntimeError):
    """A problem the person running the tool can fix; the message says how."""


# --------------------------------------------------------------------------- #
# model
# --------------------------------------------------------------------------- #
def build_model(config: Optional[str], options: Optional[Dict[str, Any]], checkpoint: str, use_ema: bool = False,
                trust_checkpoint: bool = False):
    """(model in eval mode on the CPU, postprocessor, args) for a checkpoint: its settings from
    `config` when given, else from what the checkpoint records (detector.load_trained_model)."""
    from detector import load_trained_model

    if config and not os.path.isfile(config):
        raise ExportError(f"-c {config}: no such config file")
    loaded = load_trained_model(checkpoint, config, options, "cpu", use_ema, trust_checkpoint)
    return loaded.model, loaded.postprocessor, loaded.args


def deploy_metadata(args: argparse.Namespace) -> Dict[str, Any]:
    """What deploy/onnx_detector.py needs to pre- and post-process like evaluation does."""
    from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, AugParams

    params = AugParams.from_args(args)
    if (getattr(args, "data_aug_type", None) or "detr") == "lsj":
        size = int(getattr(args, "lsj_size", None) or 1024)
        overlap = getattr(args, "data_aug_scale_overlap", None)
        size = int(size * float(overlap)) if overlap is not None and float(overlap) > 0 else size
        resize = {"mode": "longest", "size": size}
    else:
        resize = {"mode": "shorter", "size": max(params.scales), "max_size": params.max_size}
    from detector import category_names_for, label_map_for
    names = category_names_for(args)
    return {"label_to_category_id": label_map_for(args),"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "resize": resize,
            "num_select": int(args.num_select), "nms_iou_threshold": float(getattr(args, "nms_iou_threshold", -1)),
            "clip_boxes": bool(getattr(args, "postprocess_clip_boxes", False)),
            "num_classes": int(args.num_classes), "num_queries": int(args.num_queries),
            "category_names": {str(k): str(v) for k, v in dict(names).items()}}


def default_sizes(args: argparse.Namespace) -> Tuple[Tuple[int, int], List[Tuple[int, int]]]:
    """(export size, two check sizes) from the evaluation size S (shorter side) of the config:
    S x 4S/3 for the export, a smaller landscape and a portrait size for the check."""
    meta = deploy_metadata(args)["resize"]
    short = meta["size"] if meta["mode"] == "shorter" else meta["size"] * 3 // 4
    long = min(meta.get("max_size") or short * 4 // 3, short * 4 // 3)
    return (short, long), [(short * 3 // 4, long * 3 // 4 + 16), (long * 3 // 4, short * 3 // 4)]


# --------------------------------------------------------------------------- #
# export and check
# --------------------------------------------------------------------------- #
def check_paths(output: str, inputs: Sequence[str], overwrite: bool) -> str:
    """Absolute output path after util/atomic.py's checks of the graph and its external-data file
    (neither an input, neither existing unless overwrite, the folder created and writable)."""
    return check_output_file(output, inputs=inputs, overwrite=overwrite, flag="--output",
                             companions=[os.path.abspath(output) + ".data"])


def write_model(model: torch.nn.Module, folder: str, name: str, size: Tuple[int, int], num_select: Optional[int],
                metadata: Dict[str, Any], external: bool = False) -> Optional[str]:
    """Export to `folder`/`name` (a private temporary folder) with the deployment metadata in the file.

    The weights go to one external-data file `name`.data beside the graph when `external` is asked or
    when the graph is over protobuf's 2 GB limit (ViT-g: torch then writes every weight to a file of its
    own, which are gathered into that one). Returns the data file's path, or None.
    """
    import onnx

    from models.dino.export import export_onnx

    path = os.path.join(folder, name)
    example = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    export_onnx(model, path, example, num_select=num_select)
    external = external or len(os.listdir(folder)) > 1  # torch wrote weights beside the graph: over 2 GB
    proto = onnx.load(path)  # with the external weights, if any
    for leftover in os.listdir(folder):
        os.remove(os.path.join(folder, leftover))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "dino", json.dumps(metadata)
    data = f"{name}.data" if external else None
    onnx.save(proto, path, save_as_external_data=external, all_tensors_to_one_file=True, location=data,
              size_threshold=1024)
    onnx.checker.check_model(path)  # by path: works for graphs with external data too
    if not data:
        return None
    shutil.copymode(path, os.path.join(folder, data))  # onnx creates the data file private (0600)
    return os.path.join(folder, data)


def smooth_images(sizes: Sequence[Tuple[int, int]], seed: int = 0) -> List[torch.Tensor]:
    """Normalized-looking test images: low-frequency noise, bilinearly upsampled."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        coarse = torch.randn(1, 3, max(2, h // 16), max(2, w // 16), generator=gen)
        out.append(torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0])
    return out


def rows_matched(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows of `a` with a partner row in `b` (one-to-one) within ROW_TOL, as the parity checker."""
    from scipy.optimize import linear_sum_assignment

    cost = np.abs(a[:, None, :] - b[None, :, :]).max(-1)
    r, c = linear_sum_assignment(cost)
    tol = ROW_TOL + ROW_TOL * np.maximum(np.abs(a[r]).max(-1), np.abs(b[c]).max(-1))
    return float((cost[r, c] <= tol).mean())


def top_detections(logits: np.ndarray, boxes: np.ndarray, k: int = 100) -> np.ndarray:
    """[k, 6] rows (score, label, cx, cy, w, h) of the top-k (query, class) pairs of one image."""
    prob = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    top = np.argsort(-prob, kind="stable")[:k]
    q, c = top // logits.shape[1], top % logits.shape[1]
    return np.concatenate([prob[top, None], c[:, None].astype(np.float64), boxes[q].astype(np.float64)], 1)


class OnnxRuntimeRun:
    """The exported ONNX graph under ONNX Runtime (CPU), for the check and --val."""

    name, key = "ONNX Runtime (CPU)", "onnx"

    def __init__(self, path: str, threads: Optional[int] = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.with_sizes = "orig_sizes" in {i.name for i in self.session.get_inputs()}

    def batch(self, images: Sequence[torch.Tensor]):
        """The NestedTensor the graph is given for these images (padded as PyTorch batches them)."""
        from util.misc import nested_tensor_from_tensor_list
        return nested_tensor_from_tensor_list(list(images))

    def run(self, padded: torch.Tensor, orig_sizes: Optional[torch.Tensor] = None) -> List[np.ndarray]:
        """Every output of the graph (pred_logits, pred_boxes[, scores, labels, boxes])."""
        feeds = {"images": padded.numpy()}
        if self.with_sizes:
            feeds["orig_sizes"] = (orig_sizes if orig_sizes is not None else _sizes_of(padded)).numpy()
        return self.session.run(None, feeds)


class AotiRun:
    """The AOTInductor package loaded in this process, for the check and --val."""

    name, key = "AOTInductor", "aoti"

    def __init__(self, path: str, threads: Optional[int] = None):
        from models.dino.export_aoti import read_metadata

        self.package = torch._inductor.aoti_load_package(path)
        self.with_sizes = "orig_sizes" in read_metadata(self.package).get("input_names", [])

    def batch(self, images: Sequence[torch.Tensor]):
        """The images padded as deploy/aoti_detector.py pads them (multiples of 64), with their masks."""
        from models.dino.export_aoti import pad_images
        from util.misc import NestedTensor, nested_tensor_from_tensor_list

        nested = nested_tensor_from_tensor_list(list(images))
        padded = pad_images(nested.tensors)
        extra = (0, padded.shape[3] - nested.mask.shape[2], 0, padded.shape[2] - nested.mask.shape[1])
        return NestedTensor(padded, torch.nn.functional.pad(nested.mask, extra, value=True))

    def run(self, padded: torch.Tensor, orig_sizes: Optional[torch.Tensor] = None) -> List[np.ndarray]:
        inputs = [padded]
        if self.with_sizes:
            inputs.append(orig_sizes if orig_sizes is not None else _sizes_of(padded))
        with torch.inference_mode():
            return [out.numpy() for out in self.package(*inputs)]


def _sizes_of(padded: torch.Tensor) -> torch.Tensor:
    return torch.tensor([list(padded.shape[-2:])] * padded.shape[0], dtype=torch.int64)


def open_runtime(fmt: str, path: str, threads: Optional[int] = None):
    return AotiRun(path, threads) if fmt == "aoti" else OnnxRuntimeRun(path, threads)


def compare(runtime, model: torch.nn.Module, batches: Sequence[Sequence[torch.Tensor]]) -> Tuple[bool, List[str]]:
    """Run every batch through the exported model and PyTorch; (agree, report lines)."""
    ok, lines = True, []
    for images in batches:
        nested = runtime.batch(images)
        padded = nested.tensors
        with torch.no_grad():
            ref = model(nested)
        ref_logits, ref_boxes = ref["pred_logits"].numpy(), ref["pred_boxes"].numpy()
        try:
            logits, boxes = runtime.run(padded)[:2]
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's / AOTInductor's own error types
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{runtime.name} could not run the exported model on a batch of {len(images)} padded "
                              f"to {padded.shape[2]}x{padded.shape[3]} ({first}); the model of this config does not "
                              f"generalise from the export size (docs/EXPORT.md, Limits); nothing was written") from None
        for i, img in enumerate(images):
            rows_ref = np.concatenate([ref_logits[i], ref_boxes[i]], -1)
            rows_got = np.concatenate([logits[i], boxes[i]], -1)
            rows = rows_matched(rows_ref, rows_got)
            top = rows_matched(top_detections(ref_logits[i], ref_boxes[i]), top_detections(logits[i], boxes[i]))
            good = rows >= MIN_ROWS_MATCHED and top >= MIN_TOP100_MATCHED
            ok &= good
            lines.append(
                f"{'ok  ' if good else 'FAIL'} batch {len(images)} (padded to {padded.shape[2]}x{padded.shape[3]}) "
                f"image {tuple(img.shape[1:])}: max |diff| logits {np.abs(logits[i] - ref_logits[i]).max():.2e} "
                f"boxes {np.abs(boxes[i] - ref_boxes[i]).max():.2e}; query rows matched {rows:.1%}, "
                f"top-100 detections matched {top:.1%}")
    return ok, lines


def check_postprocess(runtime, model: torch.nn.Module, postprocessor, images: Sequence[torch.Tensor]) -> str:
    """One line comparing the in-graph detections with PostProcess (top-k, no NMS) on the same images."""
    from models.dino.postprocess import PostProcess

    nested = runtime.batch(images)
    sizes = torch.tensor([list(im.shape[1:]) for im in images], dtype=torch.int64)
    _, _, scores, labels, boxes = runtime.run(nested.tensors, sizes)
    with torch.no_grad():
        ref = PostProcess(num_select=postprocessor.num_select)(model(nested), sizes)
    fracs = []
    for i, r in enumerate(ref):
        a = torch.cat([r["scores"][:, None], r["labels"][:, None].float(), r["boxes"] / 100], -1).numpy()
        b = np.concatenate([scores[i][:, None], labels[i][:, None].astype(np.float32), boxes[i] / 100], -1)
        fracs.append(rows_matched(a, b) if a.shape == b.shape else 0.0)
    return f"post-processing outputs vs PostProcess: {min(fracs):.1%} of detections matched (worst image)"


# --------------------------------------------------------------------------- #
# COCO AP
# --------------------------------------------------------------------------- #
def coco_ap(runtime, model: torch.nn.Module, postprocessor, args: argparse.Namespace, coco_dir: str,
            max_images: Optional[int]) -> List[str]:
    """COCO box AP of the exported model and of PyTorch on COCODIR's val split (batch 1, as evaluation;
    the exported model's input padded as its runner pads it)."""
    import contextlib
    import io

    from tqdm import tqdm

    from datasets import build_dataset, get_coco_api_from_dataset
    from datasets.coco_eval import CocoEvaluator

    args.coco_path = coco_dir
    dataset = build_dataset(image_set="val", args=args)
    base = get_coco_api_from_dataset(dataset)
    count = len(dataset) if not max_images else min(max_images, len(dataset))
    names = ("pytorch", runtime.key)
    evaluators = {name: CocoEvaluator(base, ("bbox",)) for name in names}
    for index in tqdm(range(count), desc=f"COCO val (PyTorch and {runtime.name})", unit="image"):
        image, target = dataset[index]
        size = target["orig_size"][None]
        with torch.no_grad():
            ref = postprocessor(model([image]), size)
        logits, boxes = runtime.run(runtime.batch([image]).tensors)[:2]
        got = postprocessor({"pred_logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(boxes)}, size)
        image_id = int(target["image_id"])
        evaluators["pytorch"].update({image_id: ref[0]})
        evaluators[runtime.key].update({image_id: got[0]})
    stats = {}
    for name, ev in evaluators.items():
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
            ev.summarize()
        stats[name] = ev.coco_eval["bbox"].stats
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    lines = [f"COCO box AP on {count} images of {coco_dir} val2017:", f"{'':12}" + "".join(f"{k:>8}" for k in keys)]
    for name in names:
        lines.append(f"{name:12}" + "".join(f"{100 * v:8.2f}" if v >= 0 else f"{'n/a':>8}" for v in stats[name][:6]))
    return lines


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #
def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config_file", default=None,
                   help="model config (default: the settings the checkpoint records, or config_cfg.py beside it)")
    p.add_argument("--checkpoint", help="checkpoint file with 'model' weights (as main.py saves)")
    p.add_argument("--model", help="a released model by name (tools/fetch_weights.py --list), config included")
    p.add_argument("--weights_dir", "--weights-dir", dest="weights_dir", metavar="DIR",
                   help="folder of weight files looked in before any download (default: $DINO_WEIGHTS_DIR)")
    p.add_argument("--output", required=True, help="the .onnx (or, for --format aoti, .pt2) file to write")
    p.add_argument("--format", choices=("onnx", "aoti"), default=None,
                   help="onnx (default), or aoti: a torch.export + AOTInductor package run by torch alone "
                        "(deploy/aoti_detector.py); default from the --output suffix (.pt2: aoti)")
    p.add_argument("--options", nargs="+", action=DictAction, default={},
                   help="config overrides KEY=VALUE, as used for training")
    p.add_argument("--aoti-operator", action="store_true",
                   help="with --format aoti: keep the compiled deformable-attention operator in the package (faster "
                        "on the CPU; its runner then loads the operator's library, deploy/aoti_detector.py)")
    p.add_argument("--use-ema", action="store_true", help="export 'ema_model' instead of 'model'")
    p.add_argument("--postprocess", action="store_true",
                   help="add post-processing to the graph (input orig_sizes; outputs scores, labels, boxes)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="image size traced at export (any size runs afterwards); default from the config")
    p.add_argument("--check-sizes", type=int, nargs=4, metavar=("H1", "W1", "H2", "W2"),
                   help="the two image sizes of the check; default from the config")
    p.add_argument("--no-check", action="store_true", help="write the model without comparing it with PyTorch")
    p.add_argument("--val", metavar="COCODIR", help="also print COCO AP of the export and PyTorch on COCODIR/val2017")
    p.add_argument("--val-images", type=int, default=None, metavar="N", help="with --val: only the first N images")
    p.add_argument("--external-data", action="store_true",
                   help="write the weights to OUTPUT.data beside the graph (automatic for graphs over 2 GB)")
    p.add_argument("--overwrite", action="store_true", help="replace --output (and OUTPUT.data) if they exist")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and ONNX Runtime")
    p.add_argument("--trust_checkpoint", "--trust-checkpoint", dest="trust_checkpoint", action="store_true",
                   help="load a pickled checkpoint that holds Python objects outside the allow-list; this RUNS CODE FROM THE FILE: only for files you trust")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def resolve_model(opt: argparse.Namespace) -> None:
    """--checkpoint FILE or --model NAME (checked before any work; the name's file comes when the model loads)."""
    from util.zoo import detector_config, get_entry, use_weights_dir

    if bool(opt.checkpoint) == bool(opt.model):
        raise ExportError("give --checkpoint FILE or --model NAME (a released model: tools/fetch_weights.py --list)")
    use_weights_dir(opt.weights_dir)
    if opt.model:
        detector_config(get_entry(opt.model))
        opt.checkpoint = opt.model


def output_format(opt: argparse.Namespace) -> str:
    """'onnx' or 'aoti': --format, else from the --output suffix (.pt2: aoti)."""
    if opt.format:
        return opt.format
    return "aoti" if opt.output.lower().endswith(".pt2") else "onnx"


def check_requirements(fmt: str) -> None:
    if fmt == "aoti":
        return  # torch alone (and a C++ compiler, which torch.utils.cpp_extension finds)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"{exc.name} is not installed; install it with `pip install -r requirements-export.txt`")


def sizes_for(opt: argparse.Namespace, args: argparse.Namespace, fmt: str
              ) -> Tuple[Tuple[int, int], List[Tuple[int, int]]]:
    """(export size, the two check sizes). For an AOTInductor package the sizes it runs at are
    multiples of 64: the export size is rounded up, and each check size must pad to another size."""
    export_size, check_sizes = default_sizes(args)
    export_size = tuple(opt.size) if opt.size else export_size
    if fmt == "aoti":
        from models.dino.export_aoti import SIZE_MULTIPLE, round_up
        export_size = tuple(max(round_up(v), 2 * SIZE_MULTIPLE) for v in export_size)
        if not opt.check_sizes:  # bigger landscape and a portrait: padded sizes other than the export's
            h, w = export_size
            check_sizes = [(h + SIZE_MULTIPLE - 8, w - 8), (w - 24, h - 24 + (SIZE_MULTIPLE if h == w else 0))]
    if opt.check_sizes:
        check_sizes = [tuple(opt.check_sizes[:2]), tuple(opt.check_sizes[2:])]
    runs_at = (lambda s: tuple(max(round_up(v), 2 * SIZE_MULTIPLE) for v in s)) if fmt == "aoti" else tuple
    if not opt.no_check and any(runs_at(s) == runs_at(export_size) for s in check_sizes):
        extra = " once padded to multiples of 64" if fmt == "aoti" else ""
        raise ExportError(f"--check-sizes must differ from the export size {export_size}{extra}")
    return export_size, check_sizes


def write_package(model: torch.nn.Module, folder: str, name: str, size: Tuple[int, int],
                  num_select: Optional[int], metadata: Dict[str, Any], operator: bool = False) -> None:
    """The AOTInductor package `folder`/`name` (compiled C++: minutes on a CPU)."""
    from models.dino.export_aoti import export_aoti

    # a batch of 2: torch.export specialises a dimension of size 1
    example = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    export_aoti(model, os.path.join(folder, name), example, num_select=num_select, metadata=metadata,
                operator=operator)


def check_export(runtime, model, postprocessor, opt, check_sizes) -> bool:
    """The gate: the exported model against PyTorch at the check sizes, one by one and as a padded batch."""
    images = smooth_images(check_sizes)
    ok, lines = compare(runtime, model, [[images[0]], [images[1]], images])
    print(f"check: {runtime.name} vs PyTorch")
    print("\n".join("  " + line for line in lines))
    if opt.postprocess:
        print("  " + check_postprocess(runtime, model, postprocessor, images))
    return ok


def run(opt: argparse.Namespace) -> int:
    fmt = output_format(opt)
    if fmt == "aoti" and opt.external_data:
        raise ExportError("--external-data is for ONNX graphs; an AOTInductor package holds its weights itself")
    if fmt != "aoti" and opt.aoti_operator:
        raise ExportError("--aoti-operator is for --format aoti; an ONNX graph has no custom operators")
    check_requirements(fmt)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    resolve_model(opt)
    output = check_paths(opt.output, [p for p in (opt.config_file, opt.checkpoint) if p], opt.overwrite)
    model, postprocessor, args = build_model(opt.config_file, opt.options, opt.checkpoint, opt.use_ema,
                                             opt.trust_checkpoint)
    export_size, check_sizes = sizes_for(opt, args, fmt)
    num_select = int(args.num_select) if opt.postprocess else None

    folder = tmp_path_for(output, keep_extension=False)  # private: removed here, or by the next run if killed
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    tmp = os.path.join(folder, os.path.basename(output))
    try:
        start = time.time()
        what = "AOTInductor package (C++ compile: minutes on a CPU)" if fmt == "aoti" else "ONNX graph"
        print(f"exporting {opt.config_file or opt.checkpoint} at {export_size[0]}x{export_size[1]} "
              f"as {what} ...", flush=True)
        data = None
        try:
            if fmt == "aoti":
                write_package(model, folder, os.path.basename(output), export_size, num_select, deploy_metadata(args),
                              opt.aoti_operator)
            else:
                data = write_model(model, folder, os.path.basename(output), export_size, num_select,
                                   deploy_metadata(args), opt.external_data)
        except OSError as exc:  # the model is written to the temporary folder beside --output
            raise write_error(output, exc) from exc
        size = sum(os.path.getsize(f) for f in (tmp, data) if f) / 2**20
        print(f"exported in {time.time() - start:.0f} s ({size:.1f} MiB"
              f"{', weights in ' + os.path.basename(data) if data else ''})", flush=True)
        status = 0
        runtime = open_runtime(fmt, tmp, opt.threads) if (not opt.no_check or opt.val) else None
        if not opt.no_check and not check_export(runtime, model, postprocessor, opt, check_sizes):
            print(f"error: the exported model disagrees with PyTorch; {output} was not written "
                  f"(--no-check writes it anyway, e.g. to inspect it)", file=sys.stderr)
            status = 1
        if opt.val and status == 0:
            print("\n".join(coco_ap(runtime, model, postprocessor, args, opt.val, opt.val_images)))
        if status == 0:
            publish(tmp, data, output, fmt)
        return status
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(tmp: str, data: Optional[str], output: str, fmt: str) -> None:
    """Move the checked files to --output (the data file first: the model appears only when complete)."""
    try:
        if data:
            os.replace(data, output + ".data")
        os.replace(tmp, output)
    except OSError as exc:
        raise write_error(output, exc) from exc
    if fmt == "aoti":
        from util.trusted_packages import remember, trust_file
        if not remember(output):  # exported here: tools/inference.py --aoti loads it without --trust_checkpoint
            print(f"note: {trust_file()} could not be written, so tools/inference.py --aoti will ask for "
                  f"--trust_checkpoint for this package", file=sys.stderr)
    print(f"wrote {output}" + (f" and {output}.data" if data else ""))


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt = get_parser().parse_args(argv)
    try:
        return run(opt)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for people, the traceback with --debug
        if opt.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        known = _known_errors()
        prefix = "" if isinstance(exc, known) else f"{type(exc).__name__}: "
        hint = "" if isinstance(exc, known) else " (run with --debug for the traceback)"
        print(f"error: {prefix}{message}{hint}", file=sys.stderr)
        return 2


def _known_errors() -> Tuple[type, ...]:
    known: List[type] = [ExportError]
    for module, name in (("util.checkpoint", "CheckpointError"), ("util.slconfig", "ConfigError"),
                         ("util.atomic", "OutputError"),
                         ("models.dino.config_checks", "UnsupportedConfigError"),
                         ("datasets.validation", "DatasetError"),
                         ("models.dino.backbones.pretrained", "BackboneWeightsError")):
        try:
            known.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(known)


if __name__ == "__main__":
    sys.exit(main())
