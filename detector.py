"""Run a trained DINO from Python.

    from detector import Detector          # from the repository root (or with it on PYTHONPATH)

    detector = Detector.from_checkpoint("logs/demo/checkpoint.pth")   # config read from the checkpoint
    result = detector("photo.jpg", threshold=0.3)
    result.boxes, result.scores, result.labels, result.names          # xyxy pixels, sorted by score
    results = detector([pil_image, numpy_rgb, tensor_chw], nms=0.7)    # one Detections per image

`from_checkpoint` rebuilds the model from what the run recorded (the `args`
inside the checkpoint, or `config_cfg.py` beside it), falling back to the
`config` given; `options` override single keys. Class names come from the
checkpoint (recorded at training time), else from the dataset it names.
Images are preprocessed exactly as evaluation does (`make_coco_transforms('val')`),
so a Detector gives the detections `main.py --eval` scores for the same image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from util.detections import Detections
from util.slconfig import ConfigError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

__all__ = ["Detector", "Detections", "to_pil_image"]


def to_pil_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a path, a PIL image, an HxWx3 (or HxW) numpy array or a 3xHxW
    tensor, both RGB. Pixel values by dtype (never guessed from the values):

    * uint8: 0..255, as they are;
    * float (16/32/64-bit): 0..1 (x 255); values outside [0, 1] are refused (ValueError), e.g.
      a float array holding 0..255 (divide it by 255, or pass uint8);
    * uint16: 16-bit images, 0..65535 scaled by 255/65535 (as the dataset reader reads 16-bit PNGs);
    * other dtypes (bool, int8..int64, uint32, uint64) are refused: their range is not known.
    """
    if isinstance(image, (str, os.PathLike)):
        from datasets.image_io import load_image
        return load_image(str(image), exif_transpose="always")  # upright, as a photo viewer shows it
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"a tensor image must be [3, H, W] (RGB), got shape {list(image.shape)}")
        image = image.detach().cpu()
        image = (image.float() if image.dtype == torch.bfloat16 else image).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(f"a numpy image must be HxWx3 (RGB) or HxW, got shape {array.shape}")
        return Image.fromarray(_as_uint8(array)).convert("RGB")
    raise TypeError(f"cannot read an image from a {type(image).__name__}; give a path, a PIL image, "
                    f"a numpy array or a tensor")


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """The 0..255 pixels of an image array by the dtype rules of to_pil_image."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)] if array.size else array
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if finite.size != array.size or lo < 0.0 or hi > 1.0:
            raise ValueError(f"a float image must hold values in [0, 1]; this one spans [{lo:g}, {hi:g}]"
                             + (" with NaN/inf" if finite.size != array.size else "")
                             + " (for 0..255 values pass uint8, or divide by 255)")
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise ValueError(f"an image of dtype {array.dtype} has no known pixel range; pass uint8 (0..255), "
                     f"float in [0, 1] or uint16 (0..65535)")


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """`device`, or CUDA when available else CPU; a ConfigError when CUDA is asked for and absent."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: no CUDA device is available here; use --device cpu")
    return device


class Detector:
    """A DINO model with its preprocessing, post-processing and class names."""

    def __init__(self, model: torch.nn.Module, postprocessor: Any, args: Any,
                 category_names: Optional[Mapping[int, str]] = None, amp: bool = False):
        from datasets.transforms import make_coco_transforms

        self.model = model.eval()
        self.postprocessor = postprocessor
        self.args = args
        self.category_names: Dict[int, str] = dict(category_names or {})
        self.device = next(model.parameters()).device
        self.amp = amp
        if amp:
            from models.dino.inference_prep import use_channels_last
            use_channels_last(self.model, self.device, amp)  # measured to pay under bfloat16 (docs/OPS.md)
        self.inference_changes: tuple = ()  # what from_checkpoint did to make its model faster
        self._transform = make_coco_transforms("val", args)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, checkpoint: str, config: Optional[str] = None,
                        options: Optional[Mapping[str, Any]] = None,
                        device: Optional[Union[str, torch.device]] = None,
                        use_ema: bool = False, amp: bool = False,
                        trust_checkpoint: bool = False, compile: Optional[str] = None) -> "Detector":
        """Rebuild the model of `checkpoint` (a .pth, .safetensors or URL) and load its weights (strictly).

        config: a config file that wins over what the checkpoint records;
        options: single config keys to override ({"num_select": 100} or {"num_select": "100"});
        use_ema: the EMA weights;
        trust_checkpoint: also load a pickled file that holds Python objects outside the
        allow-list, which RUNS CODE FROM THE FILE (only for files you trust; without it such a
        file is refused and nothing in it runs);
        compile: a torch.compile backend ("inductor", or "aot_eager" for a quick check; True means
        "inductor"): the first call per image batch layout compiles (minutes with inductor on a CPU),
        later sizes reuse the graph (models/dino/compiling.py, docs/OPS.md).
        Errors for people: util.checkpoint.CheckpointError, util.slconfig.ConfigError.
        """
        device = resolve_device(device)
        loaded = load_trained_model(checkpoint, config, options, device, use_ema, trust_checkpoint)
        from models.dino.inference_prep import prepare_for_inference
        changes = prepare_for_inference(loaded.model, device, amp)  # the model is ours and only runs inference
        if compile:
            from models.dino.compiling import compile_model
            compile_model(loaded.model, device, "inductor" if compile is True else str(compile))
            changes += (f"torch.compile ({'inductor' if compile is True else compile})",)
        detector = cls(loaded.model, loaded.postprocessor, loaded.args, category_names_for(loaded.args), amp=amp)
        detector.settings_source = loaded.source
        detector.inference_changes = changes
        return detector

    @classmethod
    def from_pretrained(cls, name: str, options: Optional[Mapping[str, Any]] = None,
                        device: Optional[Union[str, torch.device]] = None, amp: bool = False,
                        config: Optional[str] = None, compile: Optional[str] = None) -> "Detector":
        """A released model by name (`Detector.available_models()`, docs/MODEL_ZOO.md), e.g.
        `Detector.from_pretrained("dino_r50_4scale_12ep")`: its config comes from the registry
        (config/model_zoo.json; `config` replaces it), its file from the weights folder
        ($DINO_WEIGHTS_DIR) or a download cached by the ecosystem's caches (util/zoo.py).
        Errors for people: util.zoo.ZooError (an unknown name), util.checkpoint.CheckpointError
        (a download that failed: one line naming the URL and where to put a copy)."""
        from util.zoo import detector_config, get_entry

        entry = get_entry(name)  # an unknown name, a backbone or a model without config: before any download
        if config is None:
            detector_config(entry)
        return cls.from_checkpoint(name, config=config, options=options, device=device, amp=amp, compile=compile)

    @staticmethod
    def available_models(details: bool = False) -> List[Any]:
        """The names `from_pretrained` takes (detectors of config/model_zoo.json and $DINO_MODEL_ZOO);
        with `details`, a dict per model: backbone, box_ap, size (None: not known until downloaded),
        config, urls, where its file is here."""
        from util.zoo import available_models, describe, get_entry

        names = available_models("detector")
        return [describe(get_entry(n)) for n in names] if details else names

    # ------------------------------------------------------------------ running
    @torch.no_grad()
    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]], threshold: float = 0.3,
                 topk: Optional[int] = None, nms: Optional[float] = None,
                 batch_size: int = 1) -> Union[Detections, List[Detections]]:
        """Detections for one image (returns one Detections) or a list (returns a list).

        threshold: minimum score; topk: at most this many per image (highest scores);
        nms: IoU threshold of a per-class non-maximum suppression (None: off, as in
        evaluation); batch_size: images per forward pass (different sizes are padded;
        1 gives exactly evaluation's numbers, as the model sees no padding).
        """
        check_filters(threshold, topk, nms)
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        pictures = [to_pil_image(x) for x in items]
        results: List[Detections] = []
        for start in range(0, len(pictures), max(1, int(batch_size))):
            results.extend(self._detect_batch(pictures[start:start + max(1, int(batch_size))],
                                              threshold, topk, nms))
        return results[0] if single else results

    def sliced(self, images: Union[ImageInput, Sequence[ImageInput]], size: Union[str, Sequence[int]] = (640, 640),
               overlap: float = 0.2, merge: str = "nmm", merge_threshold: float = 0.5, threshold: float = 0.3,
               topk: Optional[int] = None, nms: Optional[float] = None,
               batch_size: int = 4) -> Union[Detections, List[Detections]]:
        """Detections of large images from overlapping tiles (`size` W x H, `overlap` a fraction of
        a tile) plus the whole image, merged per class by box merging ("nmm") or NMS ("nms");
        tiles run `batch_size` at a time (util/slicing.py)."""
        from util.slicing import SlicedDetector

        check_filters(threshold, topk, nms)
        single = not isinstance(images, (list, tuple))
        pictures = [to_pil_image(x) for x in ([images] if single else images)]
        results = SlicedDetector(self, size, overlap, merge, merge_threshold, batch_size)(
            pictures, threshold=threshold, topk=topk, nms=nms)
        return results[0] if single else results

    def track(self, frames: Union[str, Iterable[ImageInput]], tracker: str = "bytetrack", fps: float = 30.0,
              threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = 0.7,
              tracker_options: Optional[Mapping[str, Any]] = None) -> Iterator[Detections]:
        """A generator: the detections of each frame with `track_ids` (1, 2, ...; -1: not in a
        confirmed track), from a tracker of the `trackers` library ("bytetrack", "sort", "ocsort",
        "botsort"; util/tracking.py). `frames`: a video file (decoded one frame at a time; a
        corrupt frame yields nothing) or an iterable of images in playing order at `fps`."""
        from util.tracking import make_tracker, track_frames
        from util.video_io import VideoReader

        check_filters(threshold, topk, nms)
        detect = self._frame_detect(threshold, topk, nms)
        if isinstance(frames, (str, os.PathLike)):
            with VideoReader(str(frames)) as reader:
                state = make_tracker(tracker, reader.fps, **dict(tracker_options or {}))
                yield from track_frames(detect, ((Image.fromarray(f.image), f.time) for f in reader), state)
            return
        state = make_tracker(tracker, fps, **dict(tracker_options or {}))
        yield from track_frames(detect, ((to_pil_image(f), None) for f in frames), state)

    def _frame_detect(self, threshold: float, topk: Optional[int], nms: Optional[float]):
        return lambda picture: self(picture, threshold=threshold, topk=topk, nms=nms)

    def _detect_batch(self, pictures: Sequence[Image.Image], threshold: float, topk: Optional[int],
                      nms: Optional[float]) -> List[Detections]:
        from util.misc import nested_tensor_from_tensor_list

        tensors = [self._transform(p, None)[0].to(self.device) for p in pictures]
        sizes = torch.tensor([[p.height, p.width] for p in pictures], device=self.device)
        samples = nested_tensor_from_tensor_list(tensors)  # padded here: a compiled model then sees one layout
        with self._autocast():
            outputs = self.model(samples)
        outputs = {k: outputs[k].float() for k in ("pred_logits", "pred_boxes")}
        raw = self.postprocessor(outputs, sizes)
        return [self._finish(r, p, threshold, topk, nms) for r, p in zip(raw, pictures)]

    def _autocast(self):
        """bfloat16 autocast on a CPU with native bfloat16 (float16 on CUDA) when `amp`; the
        choice is logged once, and a CPU without bfloat16 runs float32 (util/precision.py)."""
        from util.precision import inference_autocast
        return inference_autocast(self.device, self.amp)

    def _finish(self, result: Mapping[str, torch.Tensor], picture: Image.Image, threshold: float,
                topk: Optional[int], nms: Optional[float]) -> Detections:
        from torchvision.ops import batched_nms

        scores = result["scores"].float().cpu()
        labels = result["labels"].long().cpu()
        boxes = result["boxes"].float().cpu().reshape(-1, 4)
        w, h = picture.size
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
        keep = scores >= threshold
        scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
        if nms is not None and nms > 0 and len(scores):
            keep = batched_nms(boxes, scores, labels, float(nms))
            scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
        order = torch.argsort(scores, descending=True)
        if topk is not None:
            order = order[: max(0, int(topk))]
        scores, labels, boxes = scores[order], labels[order], boxes[order]
        names = [self.category_names.get(int(c), str(int(c))) for c in labels.tolist()]
        return Detections(boxes.numpy().astype(np.float32), scores.numpy().astype(np.float32),
                          labels.numpy().astype(np.int64), names, (h, w))


@dataclass
class TrainedModel:
    """A checkpoint's model (eval mode, weights loaded), its post-processor and settings."""
    model: torch.nn.Module
    postprocessor: Any
    args: Any
    source: str  # where the settings came from


def load_trained_model(checkpoint: str, config: Optional[str] = None, options: Optional[Mapping[str, Any]] = None,
                       device: Union[str, torch.device] = "cpu", use_ema: bool = False,
                       trust_checkpoint: bool = False) -> TrainedModel:
    """Rebuild the model a checkpoint (a file, URL or released model's name) records (or `config`
    names), load its weights strictly (detrex files converted on load) and set its post-processor to
    report the dataset's category ids. The class names the checkpoint records are kept even when
    `config` gives the other settings.
    Errors for people: util.checkpoint.CheckpointError, util.slconfig.ConfigError."""
    from models import build_model
    from models.dino.checkpoint_layouts import in_project_layout
    from util.checkpoint import CheckpointError, load_checkpoint, load_model_weights
    from util.run_config import args_for_checkpoint, recorded_settings
    from util.slconfig import parse_option_value
    from util.zoo import detector_config, zoo_model

    entry = zoo_model(checkpoint)  # a released model's name: its config and preset options
    if entry is not None:
        config = config or detector_config(entry)
        options = {**entry.options, **(options or {})}
    # "k": "v" strings read as on the command line (--options k=v), other values as given
    options = {k: parse_option_value(v) if isinstance(v, str) else v for k, v in (options or {}).items()}
    ckpt = load_checkpoint(checkpoint, "checkpoint", trust=trust_checkpoint)
    try:
        args, source = args_for_checkpoint(ckpt, checkpoint, config, options)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_config_suggestion(ckpt)}") from None
    args.device = str(device)
    args.trust_checkpoint = trust_checkpoint  # also for a backbone file the settings name
    recorded_names = (recorded_settings(ckpt) or {}).get("category_names")
    if not getattr(args, "category_names", None) and recorded_names:
        args.category_names = recorded_names  # main.py stores the dataset's class names
    ckpt = in_project_layout(ckpt, checkpoint, "checkpoint", args)  # detrex files: converted on load
    model, _criterion, postprocessors = build_model(args)
    key = "ema_model" if use_ema else "model"
    if key not in ckpt:
        raise CheckpointError(f"checkpoint {checkpoint} has no '{key}' weights"
                              + (" (it was trained without use_ema)" if use_ema else ""))
    load_model_weights(model, ckpt[key], checkpoint, "checkpoint", strict=True)
    model.to(device).eval()
    postprocessor = postprocessors["bbox"]
    postprocessor.set_category_ids(label_map_for(args))  # contiguous-label models report the dataset's ids
    return TrainedModel(model, postprocessor, args, source)


def check_filters(threshold: float, topk: Optional[int], nms: Optional[float]) -> None:
    """ValueError (one line) for a threshold, top-k or NMS IoU that cannot be meant."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold}: a score threshold lies in [0, 1] (scores are probabilities)")
    if topk is not None and int(topk) < 1:
        raise ValueError(f"topk={topk}: keep at least 1 detection (None keeps all)")
    if nms is not None and not 0.0 <= float(nms) <= 1.0:
        raise ValueError(f"nms={nms}: an IoU threshold lies in [0, 1] (None turns NMS off)")


def category_names_for(args: Any) -> Dict[int, str]:
    """{category id: name} recorded with the run, else read from the dataset it names, else
    COCO's names for a COCO-shaped model (91 ids, or 80 contiguous classes)."""
    recorded = getattr(args, "category_names", None)
    if isinstance(recorded, Mapping) and recorded:
        return {int(k): str(v) for k, v in recorded.items()}
    from_dataset = _names_from_dataset(args)
    if from_dataset:
        return from_dataset
    classes = int(getattr(args, "num_classes", 0))
    if classes == 91 or (classes == 80 and getattr(args, "contiguous_category_ids", False)):
        from util.class_transfer import COCO_CATEGORIES
        return dict(COCO_CATEGORIES)
    return {}


def _names_from_dataset(args: Any) -> Dict[int, str]:
    coco_path = getattr(args, "coco_path", None)
    if isinstance(coco_path, str) and coco_path:
        import json
        for split in ("train", "val"):
            path = os.path.join(coco_path, "annotations", f"instances_{split}2017.json")
            try:
                with open(path) as f:
                    return {int(c["id"]): str(c["name"]) for c in json.load(f).get("categories", [])}
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return {}


def label_map_for(args: Any) -> Optional[List[int]]:
    """Category id of each model label for models trained on contiguous labels, else None.
    A contiguous 80-class model that records no mapping (a released detrex checkpoint) is COCO's."""
    table = getattr(args, "label_to_category_id", None)
    if table:
        return [int(v) for v in table]
    if getattr(args, "contiguous_category_ids", False) and int(getattr(args, "num_classes", 0)) == 80:
        from util.class_transfer import COCO_CATEGORIES
        return [cid for cid, _ in COCO_CATEGORIES]
    return None


def _config_suggestion(checkpoint: Mapping[str, Any]) -> str:
    """For a released checkpoint that records no settings: which config to pass."""
    try:
        from models.dino.checkpoint_layouts import detect_layout, detrex_facts, find_detrex_config
        if detect_layout(checkpoint["model"], checkpoint) != "detrex":
            return " (released checkpoints: docs/MODEL_ZOO.md names the config of each)"
        path = os.path.relpath(find_detrex_config(detrex_facts(checkpoint["model"])))
        return (f" (it is a detrex checkpoint; its model matches {path} or a sibling of it in "
                f"docs/MODEL_ZOO.md: pick the row you downloaded)")
    except Exception:  # noqa: BLE001 - a suggestion only
        return " (released checkpoints: docs/MODEL_ZOO.md names the config of each)"
