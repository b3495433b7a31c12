#!/usr/bin/env python
"""Run a trained DINO on images and videos: annotated pictures + a JSON of detections.

Examples (after `bash scripts/demo.sh`):

    python tools/inference.py --checkpoint demo_output/checkpoint.pth \\
        --images data/synthetic_shapes/val2017 --output_dir demo_output/inference
    python tools/inference.py --checkpoint demo_output/checkpoint.pth \\
        --images data/synthetic_shapes/val2017/000000000001.jpg --output_dir demo_output/one --threshold 0.5 --nms 0
    python tools/inference.py --checkpoint demo_output/checkpoint.pth \\
        --images data/synthetic_shapes/val2017 --slice 96x96 --overlap 0.25 --output_dir demo_output/sliced
    python tools/make_synthetic_video.py --out data/shapes_video.mp4
    python tools/inference.py --checkpoint demo_output/checkpoint.pth \\
        --images data/shapes_video.mp4 --track --output_dir demo_output/tracking

A released model by name (`python tools/fetch_weights.py --list`; downloaded once, or taken from
--weights_dir / $DINO_WEIGHTS_DIR), its config from the model zoo:

    python tools/inference.py --model dino_r50_4scale_12ep --images photos/ --output_dir out/

An exported model instead of a checkpoint: --onnx MODEL.onnx (ONNX Runtime) or --aoti MODEL.pt2
(an AOTInductor package; after `python tools/export_onnx.py --checkpoint demo_output/checkpoint.pth
--output demo_output/dino_demo.pt2`; packages exported on this machine run as they are, others need
--trust_checkpoint because a package is compiled code):

    python tools/inference.py --aoti demo_output/dino_demo.pt2 \\
        --images data/synthetic_shapes/val2017 --output_dir demo_output/aoti

The model's settings and class names are read from the checkpoint (or the
config_cfg.py of its run); `-c CONFIG [--options k=v ...]` overrides them.
For every input IMG.ext it writes OUT/IMG_ext.png at the input's resolution
(OUT/VIDEO_ext.mp4 for a video: .mp4 .avi .mov .mkv .webm) and all detections
go to OUT/detections.json. Inputs are never written to: an --output_dir that is
an input folder is refused, and outputs that exist already are kept unless
--overwrite is given. An image that cannot be read is reported and skipped.

Detections: scores >= --threshold (default 0.3), at most --topk per image,
then a per-class non-maximum suppression at IoU --nms (default 0.7; 0 turns it
off and gives exactly the model's detections, as `main.py --eval` scores them).

Large images: --slice WxH runs the model on overlapping tiles (--overlap, a
fraction of a tile) plus the whole image and merges the boxes (--merge nmm: box
merging, default; nms), --batch_size tiles at a time (util/slicing.py).

Tracking: --track gives each object a track id that follows it from frame to
frame (--tracker bytetrack, default; sort, ocsort, botsort: the `trackers`
library), on videos and on folders of frames (one sequence per folder, frames
in name order at --fps). Per sequence it writes OUT/NAME.mp4 with ids, class
names and scores drawn, OUT/NAME.mot.txt (MOTChallenge text, to score with
`trackers eval`) and the per-frame detections with "track_ids" in
detections.json. A corrupt frame is reported and skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class ToolError(Exception):
    """A problem the user can fix; printed as one line."""


# --------------------------------------------------------------------------- inputs and outputs
def collect_inputs(paths: Sequence[str]) -> List[str]:
    """Image and video files named directly, plus those inside named folders (sorted, not recursive)."""
    found: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(os.path.join(path, f) for f in os.listdir(path)
                            if f.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
            if not inside:
                raise ToolError(f"folder {path} holds no images ({' '.join(IMAGE_EXTENSIONS)}) or videos "
                                f"({' '.join(VIDEO_EXTENSIONS)})")
            found.extend(inside)
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ToolError(f"--images {path}: no such file or folder")
    return found


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def plan_outputs(inputs: Sequence[str], output_dir: str, overwrite: bool) -> Dict[str, str]:
    """{input: output path}: one distinct name per input (IMG.ext -> IMG_ext.png), none of them
    an input; refuses an output dir that is an input folder and, without `overwrite`, outputs
    that exist already."""
    out_real = os.path.realpath(output_dir)
    input_real = {os.path.realpath(p) for p in inputs}
    for path in inputs:
        if os.path.realpath(os.path.dirname(os.path.abspath(path))) == out_real or os.path.realpath(path) == out_real:
            raise ToolError(f"--output_dir {output_dir} holds the input {path}; write the results to another "
                            f"folder so no input can be replaced")
    planned: Dict[str, str] = {}
    used = set(input_real) | {os.path.join(out_real, "detections.json")}
    for path in inputs:
        stem, ext = os.path.splitext(os.path.basename(path))
        suffix = ".mp4" if is_video(path) or os.path.isdir(path) else ".png"  # a folder: a sequence (--track)
        base = f"{stem}_{ext.lstrip('.').lower()}" if ext else stem
        name, k = base + suffix, 1
        while os.path.join(out_real, name) in used:
            name, k = f"{base}_{k}{suffix}", k + 1
        used.add(os.path.join(out_real, name))
        planned[path] = os.path.join(output_dir, name)
    existing = [p for p in list(planned.values()) + [os.path.join(output_dir, "detections.json")]
                if os.path.exists(p)]
    if existing and not overwrite:
        raise ToolError(f"--output_dir {output_dir} already holds {len(existing)} of this run's outputs (e.g. "
                        f"{os.path.basename(existing[0])}); choose another folder or pass --overwrite to "
                        f"replace them")
    return planned


def write_json_atomic(path: str, payload: Dict[str, Any]) -> None:
    """Write `payload` atomically: settings indented, one line per entry of its lists."""
    from util.atomic import atomic_write_text

    lines = []
    for key, value in payload.items():
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(v) for v in value)
            lines.append(f" {json.dumps(key)}: [" + (f"\n{body}\n ]" if body else "]"))
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    atomic_write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def save_picture_atomic(picture, path: str) -> None:
    """Save a PIL image so that `path` is either absent or complete."""
    from util.atomic import atomic_output
    with atomic_output(path) as tmp:
        picture.save(tmp, format="PNG")


# --------------------------------------------------------------------------- running
def load_image(path: str, torch_free: bool):
    """The image as RGB, upright (EXIF); through the dataset's reader (16-bit, palette, ...)
    unless the run must not import torch (--onnx)."""
    if not torch_free:
        from datasets.image_io import load_image as dataset_load_image
        return dataset_load_image(path, exif_transpose="always")  # photos upright, as a viewer shows them
    from PIL import Image, ImageOps
    if os.path.getsize(path) == 0:
        raise OSError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL's many ways of refusing a file
        raise OSError(f"{path} cannot be decoded ({type(exc).__name__}: {exc})") from None


def detect_image(detector, path: str, out_path: Optional[str], opts) -> Dict[str, Any]:
    """Detections of one image file (+ its annotated picture when `out_path`)."""
    from util.visualizer import draw_detections

    image = load_image(path, torch_free=bool(opts.onnx))
    result = detector(image, threshold=opts.threshold, topk=opts.topk, nms=opts.nms or None)
    entry = {"file": os.path.abspath(path), "output": None, **result.to_dict()}
    if out_path:
        picture = draw_detections(image, result.boxes, result.labels, result.scores, detector.category_names)
        save_picture_atomic(picture, out_path)
        entry["output"] = os.path.abspath(out_path)
    return entry


def detect_video(detector, path: str, out_path: Optional[str], opts) -> Dict[str, Any]:
    """Detections of every frame of a video (+ the annotated video when `out_path`)."""
    from util.video_io import annotate_video
    video = annotate_video(detector, path, out_path, threshold=opts.threshold, topk=opts.topk,
                           nms=opts.nms or None, progress=not opts.quiet)
    entry = {"file": os.path.abspath(path), "output": os.path.abspath(out_path) if out_path else None,
             "size": video["size"], "frames": video["frames"]}
    if video["damaged"]:
        print(f"warning: {path} is damaged: {video['damaged']}; its {len(video['frames'])} readable frames "
              f"were processed", file=sys.stderr)
        entry["damaged"] = video["damaged"]
    return entry


def run(detector, inputs: Sequence[str], outputs: Dict[str, str], opts) -> Tuple[List[dict], List[dict]]:
    """Process every input; an unreadable one is reported, skipped and listed. An output that cannot
    be written (full disk, permissions: util.atomic.OutputError) stops the run; it is never blamed on
    the input. Any other error names the input it happened on."""
    from tqdm import tqdm

    from util.atomic import OutputError

    unreadable = (OSError, ValueError) + _loaded_error_classes(("datasets.validation", "DatasetError"))
    done, skipped = [], []
    for path in tqdm(inputs, desc="inference", unit="file", disable=opts.quiet or len(inputs) < 2):
        out_path = None if opts.no_images else outputs[path]
        try:
            if opts.track:
                from tools.inference_use import track_sequence
                done.append(track_sequence(detector, path, out_path, outputs[path], opts,
                                           lambda f: load_image(f, bool(opts.onnx)), IMAGE_EXTENSIONS))
                continue
            work = detect_video if is_video(path) else detect_image
            done.append(work(detector, path, out_path, opts))
        except OutputError:
            raise
        except unreadable as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = reason.split(". Replace the file")[0]  # the dataset's advice is about annotation files
            print(f"warning: skipped {path}: {reason}", file=sys.stderr)
            skipped.append({"file": os.path.abspath(path), "error": reason})
        except Exception as exc:  # noqa: BLE001 - unexpected: say on which input, keep the cause for --debug
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ToolError(f"while processing {path}: {type(exc).__name__}: {first} (run again with --debug for "
                            f"the traceback)") from exc
    return done, skipped


def build_detector(opts):
    """The PyTorch Detector, or the ONNX Runtime one for --onnx (on tiles for --slice)."""
    from tools.inference_use import sliced
    if opts.onnx:
        return sliced(build_onnx_detector(opts), opts)
    if opts.aoti:
        return sliced(build_aoti_detector(opts), opts)
    from detector import Detector
    detector = Detector.from_checkpoint(opts.checkpoint, config=opts.config_file, options=opts.options,
                                        device=opts.device, use_ema=opts.use_ema, amp=opts.amp,
                                        trust_checkpoint=opts.trust_checkpoint, compile=opts.compile)
    if opts.category_names:
        detector.category_names = load_category_names(opts.category_names)
    if not opts.quiet:
        print(f"model: {opts.checkpoint} (settings from {detector.settings_source}); "
              f"{len(detector.category_names)} class names", file=sys.stderr)
    return sliced(detector, opts)


def build_onnx_detector(opts):
    try:
        from deploy.onnx_detector import OnnxDetector
    except ImportError as exc:
        raise ToolError(f"--onnx needs onnxruntime (pip install -r requirements-export.txt): {exc}") from None
    if not os.path.isfile(opts.onnx):
        raise ToolError(f"--onnx {opts.onnx}: no such file")
    try:
        detector = ExportedModelDetector(OnnxDetector(opts.onnx))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors
        raise ToolError(f"--onnx {opts.onnx}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    if opts.category_names:
        detector.category_names = load_category_names(opts.category_names)
    return detector


def build_aoti_detector(opts):
    """deploy.aoti_detector.AotiDetector for --aoti: a package exported on this machine, or --trust_checkpoint
    (loading a package runs the compiled code in it)."""
    from util.trusted_packages import is_trusted, trust_file

    if not os.path.isfile(opts.aoti):
        raise ToolError(f"--aoti {opts.aoti}: no such file")
    if not opts.trust_checkpoint and not is_trusted(opts.aoti):
        raise ToolError(f"--aoti {opts.aoti}: an AOTInductor package is compiled code, and this one was not exported "
                        f"on this machine (no record in {trust_file()}); export it yourself with tools/export_onnx.py "
                        f"--format aoti, or add --trust_checkpoint to run its code knowingly")
    from deploy.aoti_detector import AotiDetector
    from models.dino.ops import get_extension
    get_extension()  # a package exported with --aoti-operator calls this project's compiled operator
    try:
        detector = ExportedModelDetector(AotiDetector(opts.aoti))
    except Exception as exc:  # noqa: BLE001 - the package loader's errors
        raise ToolError(f"--aoti {opts.aoti}: torch cannot load it as an AOTInductor package "
                        f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                        f"a package runs only with the torch version and CPU kind it was exported for") from None
    if opts.category_names:
        detector.category_names = load_category_names(opts.category_names)
    if not opts.quiet:
        print(f"model: {opts.aoti} (AOTInductor package); {len(detector.category_names)} class names", file=sys.stderr)
    return detector


class ExportedModelDetector:
    """deploy's OnnxDetector / AotiDetector behind the Detector's call: the same threshold,
    top-k and per-class NMS, results as util.detections.Detections (numpy only)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.category_names: Dict[int, str] = dict(runtime.category_names)

    def __call__(self, image, threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = None):
        import numpy as np
        from deploy.onnx_detector import nms as class_agnostic_nms
        from util.detections import Detections

        [raw] = self.runtime(image, threshold=threshold, nms=-1.0)
        boxes, scores, labels = raw["boxes"], raw["scores"], raw["labels"]
        w, h = image.size
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        if nms and len(scores):
            keep = np.concatenate([np.flatnonzero(labels == c)[class_agnostic_nms(boxes[labels == c],
                                                                                   scores[labels == c], nms)]
                                   for c in np.unique(labels)])
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        order = np.argsort(-scores, kind="stable")[: topk if topk is not None else None]
        labels = labels[order].astype(np.int64)
        names = [self.category_names.get(int(c), str(int(c))) for c in labels]
        return Detections(boxes[order], scores[order].astype(np.float32), labels, names, (h, w))


def load_category_names(coco_json: str) -> Dict[int, str]:
    """{category id: name} from a COCO annotation file's `categories`."""
    try:
        with open(coco_json) as f:
            return {int(c["id"]): str(c["name"]) for c in json.load(f)["categories"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"--category-names {coco_json}: not a COCO json with a 'categories' list ({exc})") from None


# --------------------------------------------------------------------------- command line
def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "--resume", dest="checkpoint", help="checkpoint file (main.py's or a released one)")
    p.add_argument("--model", help="a released model by name (tools/fetch_weights.py --list), config included")
    p.add_argument("--weights_dir", "--weights-dir", dest="weights_dir", metavar="DIR",
                   help="folder of weight files looked in before any download (default: $DINO_WEIGHTS_DIR)")
    p.add_argument("--onnx", help="run this exported ONNX model with ONNX Runtime instead of a checkpoint")
    p.add_argument("--aoti", metavar="MODEL.pt2",
                   help="run this AOTInductor package (tools/export_onnx.py --format aoti) instead of a checkpoint")
    p.add_argument("--images", nargs="+", required=True, help="image or video files and/or folders of them")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True,
                   help="folder for the annotated pictures/videos and detections.json (not an input folder)")
    p.add_argument("-c", "--config_file", help="config to build the model from (default: read from the checkpoint)")
    p.add_argument("--options", nargs="+", action=DictAction, default={}, help="config overrides KEY=VALUE")
    p.add_argument("--threshold", type=float, default=0.3, help="minimum score of a detection (default 0.3)")
    p.add_argument("--nms", type=float, default=0.7,
                   help="IoU of the per-class non-maximum suppression (default 0.7; 0: off, the raw model)")
    p.add_argument("--topk", type=int, default=100, help="at most this many detections per image (default 100)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPUs with AVX512-BF16/AMX, GPUs)")
    p.add_argument("--use-ema", "--use_ema", dest="use_ema", action="store_true", help="the EMA weights")
    p.add_argument("--category-names", "--category_names", dest="category_names",
                   help="COCO json naming the classes (default: the names recorded in the checkpoint)")
    from tools.inference_use import add_use_arguments
    add_use_arguments(p)  # --slice, --track
    p.add_argument("--no-images", action="store_true", help="write only detections.json")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --output_dir")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model (inductor by default; the first image compiles for minutes on a "
                        "CPU, later sizes reuse it; docs/OPS.md)")
    p.add_argument("--trust_checkpoint", "--trust-checkpoint", dest="trust_checkpoint", action="store_true",
                   help="load a pickled checkpoint that holds Python objects outside the allow-list; this RUNS CODE FROM THE FILE: only for files you trust")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def check_values(opts) -> None:
    """Refuse values that cannot be meant (one line each)."""
    if not 0.0 <= opts.threshold <= 1.0:
        raise ToolError(f"--threshold {opts.threshold}: a score threshold lies in [0, 1] (scores are "
                        f"probabilities); e.g. --threshold 0.3")
    if opts.topk < 1:
        raise ToolError(f"--topk {opts.topk}: keep at least 1 detection per image (default 100)")
    if not 0.0 <= opts.nms <= 1.0:
        raise ToolError(f"--nms {opts.nms}: an IoU threshold lies in [0, 1] (0 turns NMS off; default 0.7)")
    from tools.inference_use import check_use_values
    check_use_values(opts)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Run the tool; returns the detections written to detections.json."""
    opts = get_parser().parse_args(argv)
    if sum(bool(x) for x in (opts.checkpoint, opts.onnx, opts.model, opts.aoti)) != 1:
        raise ToolError("give one of --checkpoint CKPT, --model NAME, --onnx MODEL.onnx or --aoti MODEL.pt2")
    exported = "--onnx" if opts.onnx else "--aoti" if opts.aoti else None
    for flag, given in (("--compile", opts.compile), ("--amp", opts.amp), ("--use-ema", opts.use_ema),
                        ("--device", opts.device), ("-c", opts.config_file), ("--options", opts.options)):
        if exported and given:
            raise ToolError(f"{flag} applies to a checkpoint's model; {exported} runs the exported model as it was "
                            f"exported (export again with the settings you want)")
    if not (opts.onnx or opts.aoti):  # (the ONNX path never imports torch)
        from util.zoo import detector_config, get_entry, use_weights_dir
        use_weights_dir(opts.weights_dir)
        if opts.model:
            detector_config(get_entry(opts.model))  # an unknown name or a backbone: one line, before any work
            opts.checkpoint = opts.model
    check_values(opts)
    from tools import inference_use as use
    inputs = (use.collect_sequences(opts.images, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS) if opts.track
              else collect_inputs(opts.images))
    outputs = plan_outputs(inputs, opts.output_dir, opts.overwrite)
    if opts.track:
        use.check_mot_outputs(outputs, opts)
    from util.atomic import prepare_output_dir
    prepare_output_dir(opts.output_dir)  # a folder this run can write in, before the model is loaded
    try:
        detector = build_detector(opts)
    except Exception as exc:  # noqa: BLE001 - people's errors pass as they are; others name the model file
        if isinstance(exc, (ToolError,) + _loaded_error_classes(*PEOPLE_ERRORS)):
            raise
        from util.cli import unexpected_error_line
        raise ToolError(unexpected_error_line(exc, opts.checkpoint or opts.onnx or opts.aoti)[len("error: "):]) from exc
    start = time.time()
    done, skipped = run(detector, inputs, outputs, opts)
    source = opts.model or os.path.abspath(opts.checkpoint or opts.onnx or opts.aoti)
    payload = {"checkpoint": source, "threshold": opts.threshold,
               "nms": opts.nms, "topk": opts.topk, **use.use_settings(opts),
               "category_names": {str(k): v for k, v in detector.category_names.items()},
               "detections": done, "skipped": skipped}
    json_path = os.path.join(opts.output_dir, "detections.json")
    write_json_atomic(json_path, payload)
    count = sum(len(d.get("scores", [])) for d in done) + sum(len(f["scores"]) for d in done
                                                              for f in d.get("frames", []))
    print(f"{len(done)} files in {time.time() - start:.1f} s, {count} detections with score >= {opts.threshold}"
          f"{f', {len(skipped)} skipped' if skipped else ''}; results in {os.path.abspath(opts.output_dir)}")
    if not done:
        raise ToolError(f"none of the {len(inputs)} inputs could be read (see the warnings above)")
    return done


def _loaded_error_classes(*places: Tuple[str, str]) -> tuple:
    """The error classes of modules this run has imported (importing none, so an --onnx run
    never pulls in torch just to name the errors it cannot raise)."""
    found = []
    for module, name in places:
        if module in sys.modules and hasattr(sys.modules[module], name):
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


PEOPLE_ERRORS = (("util.slconfig", "ConfigError"), ("util.checkpoint", "CheckpointError"),
                 ("util.atomic", "OutputError"), ("util.weights_io", "CheckpointError"),
                 ("models.dino.config_checks", "UnsupportedConfigError"), ("datasets.validation", "DatasetError"),
                 ("tools.inference_use", "UseError"))


def run_cli(argv: Optional[Sequence[str]] = None) -> int:
    """main() with the errors meant for people turned into one line and an exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
    except Exception as exc:  # noqa: BLE001 - every error ends in one line (a traceback with --debug)
        if debug:
            raise
        message = str(exc).strip()
        if isinstance(exc, (ToolError,) + _loaded_error_classes(*PEOPLE_ERRORS)):
            print(f"error: {message}", file=sys.stderr)
            return 2
        first = message.splitlines()[0] if message else ""
        print(f"error: {type(exc).__name__}: {first} (run again with --debug for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    from util.cpu_memory import reuse_freed_memory
    reuse_freed_memory()  # big activations reuse mapped pages image after image (util/cpu_memory.py)
    sys.exit(run_cli())
