#!/usr/bin/env python
"""Run a trained DINO checkpoint on images and save annotated pictures + a JSON of detections.

    python tools/inference.py -c config/DINO/DINO_4scale.py --checkpoint logs/demo/checkpoint.pth \
        --images data/synthetic/val2017 --output_dir outputs/inference --threshold 0.3 --device cpu \
        --category-names data/synthetic/annotations/instances_train2017.json \
        --options num_classes=6 dn_labelbook_size=6 backbone=resnet18

For every image IMG.ext it writes OUT/IMG.png (boxes, class names, scores) and
all detections go to OUT/detections.json::

    {"checkpoint": ..., "threshold": 0.3, "category_names": {"1": "circle", ...},
     "detections": [{"file": ".../IMG.jpg", "output_image": ".../IMG.png",
                     "width": W, "height": H,
                     "boxes": [[x0, y0, x1, y1], ...],   # pixels of the original image
                     "scores": [...], "labels": [...], "names": [...]}, ...]}

`--options` must be the ones the checkpoint was trained with (model size,
num_classes, ...). Class names come from `--category-names` (a COCO json,
usually the train annotations), else from the checkpoint's saved `args`
(`category_names`, or the train json under its `coco_path` when that exists),
else the class ids are shown.

Code that already holds a model (the training demo) calls `run_inference`
directly; the helpers below (preprocessing, name lookup, JSON) need neither
`main.py` nor a model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from util.visualizer import draw_detections  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the original COCO recipe, used when args has no data_aug_* keys
DEFAULT_SCALES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
DEFAULT_MAX_SIZE = 1333

__all__ = [
    "collect_image_paths", "val_resize_params", "resized_hw", "preprocess_image", "make_val_transform",
    "load_rgb_image",
    "load_category_names", "category_names_from_args", "resolve_category_names",
    "load_checkpoint", "strip_module_prefix", "result_to_detection", "write_detections_json",
    "run_inference", "build_model_from_config", "main",
]


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #
def collect_image_paths(paths: Iterable[str]) -> List[str]:
    """Image files named directly, plus the images inside named folders (sorted, not recursive)."""
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                warnings.warn(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {p}")
            out.extend(found)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"no such image file or folder: {p}")
    return out


# --------------------------------------------------------------------------- #
# preprocessing (the val transform of the DETR/DINO COCO recipe)
# --------------------------------------------------------------------------- #
def val_resize_params(args: Any) -> Tuple[int, Optional[int]]:
    """(shorter-side size, longer-side cap) of the val transform for these args.

    As in the original `make_coco_transforms('val')`: `max(data_aug_scales)` and
    `data_aug_max_size`, both multiplied by `data_aug_scale_overlap` when set.
    """
    scales = list(getattr(args, "data_aug_scales", None) or DEFAULT_SCALES)
    max_size = getattr(args, "data_aug_max_size", DEFAULT_MAX_SIZE)
    overlap = getattr(args, "data_aug_scale_overlap", None)
    if overlap is not None and float(overlap) > 0:
        scales = [int(s * float(overlap)) for s in scales]
        max_size = int(max_size * float(overlap)) if max_size else max_size
    return int(max(scales)), (int(max_size) if max_size else None)


def resized_hw(width: int, height: int, size: int, max_size: Optional[int] = None) -> Tuple[int, int]:
    """(new_h, new_w): shorter side -> `size`, unless that makes the longer side exceed `max_size`."""
    short, long = float(min(width, height)), float(max(width, height))
    if max_size is not None and long / short * size > max_size:
        size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def preprocess_image(image: Image.Image, size: int, max_size: Optional[int] = None) -> torch.Tensor:
    """PIL image -> normalized float tensor [3, H', W'] (RGB, resized, ImageNet mean/std)."""
    import torchvision.transforms.functional as F

    image = image.convert("RGB")
    new_h, new_w = resized_hw(image.width, image.height, size, max_size)
    if (new_h, new_w) != (image.height, image.width):
        image = F.resize(image, [new_h, new_w])
    tensor = F.to_tensor(image)
    return F.normalize(tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def make_val_transform(args: Any = None):
    """Callable PIL image -> normalized tensor, exactly as evaluation preprocesses images.

    Uses the project's `datasets.transforms.make_coco_transforms('val', args)`;
    the stand-alone `preprocess_image` (same DETR arithmetic) only if that
    module cannot be imported.
    """
    try:
        from datasets.transforms import make_coco_transforms
    except ImportError:
        size, max_size = val_resize_params(args)
        return lambda image: preprocess_image(image, size, max_size)
    transform = make_coco_transforms("val", args)
    return lambda image: transform(image, None)[0]


def load_rgb_image(path: str) -> Image.Image:
    """The image as 8-bit RGB, read the way the dataset reads it (`datasets.image_io`) when available."""
    try:
        from datasets.image_io import load_image
    except ImportError:
        with Image.open(path) as im:
            return im.convert("RGB")
    return load_image(path)


# --------------------------------------------------------------------------- #
# class names
# --------------------------------------------------------------------------- #
def load_category_names(coco_json: str) -> Dict[int, str]:
    """{category id: name} from a COCO annotation file's `categories`."""
    with open(coco_json) as f:
        data = json.load(f)
    if "categories" not in data:
        raise ValueError(f"{coco_json} has no 'categories' list")
    return {int(c["id"]): str(c["name"]) for c in data["categories"]}


def _names_from_value(value: Any) -> Optional[Dict[int, str]]:
    """Accepts {id: name}, [{'id', 'name'}, ...] or [name, ...] (ids 1..N, as in COCO)."""
    if isinstance(value, Mapping) and value:
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(c, Mapping) and "id" in c and "name" in c for c in value):
            return {int(c["id"]): str(c["name"]) for c in value}
        if all(isinstance(c, str) for c in value):
            return {i + 1: n for i, n in enumerate(value)}
    return None


def category_names_from_args(args: Any) -> Optional[Dict[int, str]]:
    """Class names stored in (checkpoint or config) args, if any.

    Looks at `category_names` / `class_names` / `label_names` / `categories`,
    then at `coco_path/annotations/instances_train2017.json` (or val) if that file exists.
    """
    if args is None:
        return None
    get = (lambda k: args.get(k)) if isinstance(args, Mapping) else (lambda k: getattr(args, k, None))
    for key in ("category_names", "class_names", "label_names", "categories"):
        names = _names_from_value(get(key))
        if names:
            return names
    coco_path = get("coco_path")
    if isinstance(coco_path, str) and coco_path:
        for split in ("train", "val"):
            path = os.path.join(coco_path, "annotations", f"instances_{split}2017.json")
            if os.path.isfile(path):
                try:
                    return load_category_names(path)
                except (OSError, ValueError, KeyError):
                    pass
    return None


def resolve_category_names(coco_json: Optional[str] = None, checkpoint_args: Any = None,
                           args: Any = None) -> Dict[int, str]:
    """Names from the COCO json if given, else checkpoint args, else run args; {} -> ids are shown."""
    if coco_json:
        return load_category_names(coco_json)
    for source in (checkpoint_args, args):
        names = category_names_from_args(source)
        if names:
            return names
    return {}


# --------------------------------------------------------------------------- #
# checkpoint
# --------------------------------------------------------------------------- #
def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove a leading 'module.' (DistributedDataParallel) from every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def load_checkpoint(path: str, use_ema: bool = False) -> Tuple[Dict[str, torch.Tensor], Any]:
    """(model state dict, saved args or None) from a checkpoint file.

    The file is a dict with 'model' (and maybe 'ema_model', 'args', ...), or a
    bare state dict. Plain tensors/containers load with `weights_only=True`;
    checkpoints that pickled other objects (e.g. the argparse `args`) need a full
    unpickle, done only after that fails, so only load checkpoints you trust.
    """
    import argparse as _argparse

    try:
        with torch.serialization.safe_globals([_argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling refusal
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    key = "ema_model" if use_ema else "model"
    if key in ckpt:
        state = ckpt[key]
    elif use_ema:
        raise KeyError(f"{path} has no 'ema_model' (keys: {sorted(ckpt)})")
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt  # a bare state dict
    else:
        raise KeyError(f"{path} has no 'model' state dict (keys: {sorted(ckpt)})")
    return strip_module_prefix(state), ckpt.get("args")


# --------------------------------------------------------------------------- #
# results
# --------------------------------------------------------------------------- #
def result_to_detection(result: Mapping[str, torch.Tensor], threshold: float, width: int, height: int,
                        category_names: Optional[Mapping[int, str]] = None) -> Dict[str, list]:
    """One postprocessor result -> {'boxes', 'scores', 'labels', 'names'} (plain lists).

    Keeps scores >= threshold, sorted by score, boxes clipped to the image.
    """
    scores = result["scores"].detach().float().cpu()
    labels = result["labels"].detach().cpu().long()
    boxes = result["boxes"].detach().float().cpu().reshape(-1, 4)
    keep = scores >= threshold
    scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
    order = torch.argsort(scores, descending=True)
    scores, labels, boxes = scores[order], labels[order], boxes[order]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    names = category_names or {}
    return {
        "boxes": [[round(float(v), 2) for v in b] for b in boxes.tolist()],
        "scores": [round(float(s), 4) for s in scores.tolist()],
        "labels": [int(l) for l in labels.tolist()],
        "names": [names.get(int(l), str(int(l))) for l in labels.tolist()],
    }


def write_detections_json(detections: Sequence[Mapping], path: str, **meta: Any) -> None:
    """Write {"...meta", "detections": [...]} to `path` (category name keys become strings)."""
    payload = {}
    for k, v in meta.items():
        if isinstance(v, Mapping):
            v = {str(kk): vv for kk, vv in v.items()}
        payload[k] = v
    # metadata indented, one line per image: readable and still small
    head = json.dumps(payload, indent=1)
    head = head[:-2] + ",\n" if payload else "{\n"
    body = ",\n".join("  " + json.dumps(d) for d in detections)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(head + ' "detections": [\n' + body + ("\n" if body else "") + " ]\n}\n")


def _unique_png_name(path: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = f"{stem}.png", 1
    while name in used:
        name, k = f"{stem}_{k}.png", k + 1
    used.add(name)
    return name


# --------------------------------------------------------------------------- #
# inference with a model in hand
# --------------------------------------------------------------------------- #
@torch.no_grad()
def run_inference(
    model: torch.nn.Module,
    postprocessors: Mapping[str, Any],
    image_paths: Sequence[str],
    out_dir: Optional[str],
    args: Any = None,
    category_names: Optional[Mapping[int, str]] = None,
    threshold: float = 0.3,
    device: Optional[Any] = None,
    save_images: bool = True,
    json_name: Optional[str] = "detections.json",
    vis_min_size: int = 384,
    json_meta: Optional[Mapping[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """Detect objects in `image_paths`; write annotated PNGs and a JSON into `out_dir`.

    model / postprocessors: as returned by `build_model_main(args)`.
    args: read for the val transform (`data_aug_scales`, `data_aug_max_size`,
    `data_aug_scale_overlap`, ...); the original COCO sizes when None.
    device: defaults to the model's device. The model is put in eval mode and
    returned to its previous mode afterwards.
    vis_min_size: pictures whose shorter side is smaller are enlarged for drawing
    (0: never), so labels stay legible on tiny images; boxes in the JSON always
    are in pixels of the original image.
    Returns one dict per image: file, output_image (or None), width, height,
    boxes (xyxy), scores, labels, names.
    """
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    device = torch.device(device)
    transform = make_val_transform(args)
    postprocess = postprocessors["bbox"] if isinstance(postprocessors, Mapping) else postprocessors
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

    was_training = model.training
    model.eval()
    used_names: set = set()
    detections: List[Dict[str, Any]] = []
    try:
        for path in image_paths:
            image = load_rgb_image(path)
            w, h = image.size
            x = transform(image).to(device)
            outputs = model([x])
            target_sizes = torch.tensor([[h, w]], device=device)
            result = postprocess(outputs, target_sizes)[0]
            det = {"file": os.path.abspath(path), "output_image": None, "width": w, "height": h}
            det.update(result_to_detection(result, threshold, w, h, category_names))
            if out_dir and save_images:
                vis, boxes = image, det["boxes"]
                if vis_min_size and min(w, h) < vis_min_size:
                    f = vis_min_size / min(w, h)
                    vis = image.resize((round(w * f), round(h * f)), Image.BILINEAR)
                    boxes = [[v * f for v in b] for b in boxes]
                drawn = draw_detections(vis, boxes, det["labels"], det["scores"], category_names)
                out_path = os.path.join(out_dir, _unique_png_name(path, used_names))
                drawn.save(out_path)
                det["output_image"] = os.path.abspath(out_path)
            detections.append(det)
    finally:
        model.train(was_training)

    if out_dir and json_name:
        meta = dict(json_meta or {})
        meta.setdefault("threshold", threshold)
        meta.setdefault("category_names", dict(category_names or {}))
        write_detections_json(detections, os.path.join(out_dir, json_name), **meta)
    return detections


# --------------------------------------------------------------------------- #
# building the model from a config (needs main.py)
# --------------------------------------------------------------------------- #
def build_model_from_config(config_file: str, options: Optional[Mapping[str, Any]] = None,
                            device: str = "cpu") -> Tuple[torch.nn.Module, Mapping[str, Any], argparse.Namespace]:
    """(model, postprocessors, args) as main.py builds them, for config + --options."""
    from main import build_model_main, get_args_parser
    from util.slconfig import SLConfig

    args = get_args_parser().parse_args(["-c", config_file])
    cfg = SLConfig.fromfile(config_file)
    if options:
        try:
            from util.slconfig import check_options
            options = check_options(cfg, options)
        except ImportError:
            pass
        cfg.merge_from_dict(dict(options))
    for k, v in cfg.to_dict().items():
        if k not in vars(args):
            setattr(args, k, v)
    args.device = device
    model, _criterion, postprocessors = build_model_main(args)
    model.to(torch.device(device))
    return model, postprocessors, args


def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config_file", required=True, help="model config (the one used for training)")
    p.add_argument("--checkpoint", "--resume", dest="checkpoint", required=True,
                   help="checkpoint file: a dict with 'model' (a state dict), as main.py saves")
    p.add_argument("--images", nargs="+", required=True, help="image files and/or folders of images")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True,
                   help="where annotated PNGs and detections.json are written")
    p.add_argument("--threshold", type=float, default=0.3, help="keep detections with at least this score")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--options", nargs="+", action=DictAction, default={},
                   help="config overrides KEY=VALUE, as for training (model size, num_classes, ...)")
    p.add_argument("--category-names", "--category_names", dest="category_names", default=None,
                   help="COCO json whose 'categories' name the classes (e.g. the train annotations)")
    p.add_argument("--use-ema", action="store_true", help="load 'ema_model' instead of 'model'")
    p.add_argument("--non-strict", action="store_true",
                   help="load the state dict with strict=False (missing/unexpected keys are reported)")
    p.add_argument("--vis-min-size", type=int, default=384,
                   help="enlarge pictures with a shorter side below this for drawing (0: never)")
    p.add_argument("--no-images", action="store_true", help="write only detections.json")
    return p


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    opts = get_parser().parse_args(argv)
    image_paths = collect_image_paths(opts.images)
    if not image_paths:
        raise SystemExit("no images found in " + " ".join(opts.images))

    model, postprocessors, args = build_model_from_config(opts.config_file, opts.options, opts.device)
    state_dict, ckpt_args = load_checkpoint(opts.checkpoint, use_ema=opts.use_ema)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=not opts.non_strict)
    except RuntimeError as exc:
        raise RuntimeError(
            f"{opts.checkpoint} does not fit the model built from {opts.config_file} and --options "
            f"(pass the --options the model was trained with; --non-strict loads what fits):\n{exc}") from exc
    if missing or unexpected:
        print(f"warning: {len(missing)} missing keys {missing[:5]}, "
              f"{len(unexpected)} unexpected keys {unexpected[:5]}", file=sys.stderr)

    names = resolve_category_names(opts.category_names, ckpt_args, args)
    detections = run_inference(
        model, postprocessors, image_paths, opts.output_dir, args, names, opts.threshold,
        device=opts.device, save_images=not opts.no_images, vis_min_size=opts.vis_min_size,
        json_meta={"checkpoint": os.path.abspath(opts.checkpoint), "config_file": opts.config_file},
    )
    n_boxes = sum(len(d["scores"]) for d in detections)
    print(f"{len(detections)} images, {n_boxes} detections with score >= {opts.threshold}")
    print(f"results in {os.path.abspath(opts.output_dir)} (detections.json"
          f"{'' if opts.no_images else ' and one .png per image'})")
    return detections


if __name__ == "__main__":
    main()
