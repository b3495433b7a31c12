"""Run an exported DINO model (tools/export_onnx.py) with ONNX Runtime only.

Needs numpy, pillow and onnxruntime; no torch, no project code: copy this file
next to MODEL.onnx on the deployment machine.

    from deploy.onnx_detector import OnnxDetector
    detector = OnnxDetector("dino.onnx")                  # threads / providers optional
    [result] = detector("street.jpg", threshold=0.3)      # or a PIL image, an HxWx3 uint8 RGB array, or a list
    result["boxes"]   # float32 [N, 4] x0, y0, x1, y1 in pixels of the original image
    result["scores"]  # float32 [N], highest first
    result["labels"]  # int64 [N] class ids as in the training annotations
    detector.category_names.get(int(result["labels"][0]))  # names stored in the model, if any

Interface
    `OnnxDetector(model_path, providers=None, num_threads=None, batch_size=1)`
        providers: ONNX Runtime execution providers (default CPU only);
        num_threads: intra-op threads (default: ONNX Runtime's choice);
        batch_size: images per run. 1 is what evaluation does; larger batches pad
        images to a common size, which changes the features of the smaller
        images a little, exactly as a padded PyTorch batch does.
    `detector(images, threshold=0.0, topk=None, nms=None) -> list of dicts`, one per image:
        threshold: keep detections scoring at least this;
        topk: (query, class) pairs considered per image, default the model's
        `num_select` (PostProcess's top-k over sigmoid scores);
        nms: IoU threshold of a class-agnostic NMS, default the model's
        `nms_iou_threshold` (<= 0: none).
    `detector.preprocess(image) -> float32 [3, H, W]` and `detector.run(batch) ->
    (pred_logits, pred_boxes)` expose the two halves.

Pre- and post-processing follow what tools/export_onnx.py stored in the model's
metadata: the evaluation resize of its config (shorter side `size`, longer side
capped at `max_size`, bilinear, as datasets/transforms.py; or longest side
`size` for LSJ configs), ImageNet normalization, zero padding at the bottom /
right, then PostProcess: top-k of the sigmoid scores, boxes scaled to the
original image, optional clipping to the image and NMS.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort
from PIL import Image

ImageLike = Union[str, Image.Image, np.ndarray]
DEFAULT_META = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "resize": {"mode": "shorter", "size": 800, "max_size": 1333},
                "num_select": 300, "nms_iou_threshold": -1.0, "clip_boxes": False, "category_names": {},
                "label_to_category_id": None}


def resized_hw(width: int, height: int, resize: Dict[str, Any]) -> Tuple[int, int]:
    """(h, w) after the evaluation resize (same arithmetic as datasets/transforms.py and datasets/lsj.py)."""
    size = int(resize["size"])
    if resize.get("mode") == "longest":
        factor = size / max(height, width)
        return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))
    max_size = resize.get("max_size")
    if max_size is not None:
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes` [K, 4]."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy class-agnostic NMS, highest score first (as torchvision.ops.nms)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][box_iou(boxes[i], boxes[order[1:]]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class OnnxDetector:
    """An exported DINO model behind an images-in, detections-out call (see module doc)."""

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None, batch_size: int = 1):
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(model_path, options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        stored = self.session.get_modelmeta().custom_metadata_map.get("dino")
        self.meta: Dict[str, Any] = dict(DEFAULT_META, **(json.loads(stored) if stored else {}))
        self.category_names = {int(k): v for k, v in self.meta["category_names"].items()}
        self.batch_size = max(1, int(batch_size))
        self._inputs = {i.name for i in self.session.get_inputs()}

    def preprocess(self, image: ImageLike) -> np.ndarray:
        """Resized, ImageNet-normalized float32 [3, H, W] of an image (path, PIL image or HxWx3 uint8 RGB)."""
        image = _as_pil(image)
        h, w = resized_hw(image.width, image.height, self.meta["resize"])
        if (h, w) != (image.height, image.width):
            image = image.resize((w, h), Image.BILINEAR)
        x = np.asarray(image, dtype=np.float32) / np.float32(255)
        mean = np.asarray(self.meta["mean"], dtype=np.float32)
        std = np.asarray(self.meta["std"], dtype=np.float32)
        return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))

    def run(self, batch: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(pred_logits [N, Q, C], pred_boxes [N, Q, 4]) of preprocessed images, zero-padded to one size."""
        h = max(x.shape[1] for x in batch)
        w = max(x.shape[2] for x in batch)
        images = np.zeros((len(batch), 3, h, w), dtype=np.float32)
        for i, x in enumerate(batch):
            images[i, :, :x.shape[1], :x.shape[2]] = x
        feeds = {"images": images}
        if "orig_sizes" in self._inputs:  # a graph exported with post-processing
            feeds["orig_sizes"] = np.array([[h, w]] * len(batch), dtype=np.int64)
        logits, boxes = self.session.run(["pred_logits", "pred_boxes"], feeds)
        return logits, boxes

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]], threshold: float = 0.0,
                 topk: Optional[int] = None, nms: Optional[float] = None) -> List[Dict[str, np.ndarray]]:
        if isinstance(images, (str, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        pil = [_as_pil(im) for im in images]
        results: List[Dict[str, np.ndarray]] = []
        for start in range(0, len(pil), self.batch_size):
            chunk = pil[start:start + self.batch_size]
            logits, boxes = self.run([self.preprocess(im) for im in chunk])
            for im, lg, bx in zip(chunk, logits, boxes):
                results.append(self.postprocess(lg, bx, (im.height, im.width), threshold, topk, nms))
        return results

    def postprocess(self, logits: np.ndarray, boxes: np.ndarray, orig_hw: Tuple[int, int], threshold: float = 0.0,
                    topk: Optional[int] = None, nms_iou: Optional[float] = None) -> Dict[str, np.ndarray]:
        """PostProcess for one image: [Q, C] logits and [Q, 4] cxcywh boxes -> detections in pixels."""
        num_classes = logits.shape[1]
        prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float32).reshape(-1)))
        k = min(int(topk if topk is not None else self.meta["num_select"]), prob.size)
        top = np.argsort(-prob, kind="stable")[:k]
        scores, query, labels = prob[top], top // num_classes, top % num_classes
        cx, cy, w, h = boxes[query].T
        height, width = orig_hw
        xyxy = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)
        xyxy = (xyxy * np.array([width, height, width, height], dtype=np.float32)).astype(np.float32)
        if self.meta["clip_boxes"]:
            xyxy = np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)
            ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            scores, labels, xyxy = scores[ok], labels[ok], xyxy[ok]
        iou = float(nms_iou if nms_iou is not None else self.meta["nms_iou_threshold"])
        if iou > 0:
            keep = nms(xyxy, scores, iou)
            scores, labels, xyxy = scores[keep], labels[keep], xyxy[keep]
        ok = scores >= threshold
        labels = labels[ok].astype(np.int64)
        table = self.meta.get("label_to_category_id")
        if table:  # a model trained on contiguous labels 0..K-1: report the dataset's category ids
            table = np.asarray(table, dtype=np.int64)
            known = labels < len(table)
            labels = np.where(known, table[np.minimum(labels, len(table) - 1)], labels)
        return {"boxes": xyxy[ok], "scores": scores[ok].astype(np.float32), "labels": labels}


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, str):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
        return Image.fromarray(image, "RGB")
    return image.convert("RGB")
