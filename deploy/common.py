"""What both deployment runners share: images in, detections out, with numpy and pillow.

`ExportedDetector` does the pre-processing (the evaluation resize stored in the model,
ImageNet normalization, zero padding at the bottom / right) and the post-processing
(PostProcess's top-k of sigmoid scores, boxes in pixels of the original image, optional
clipping and NMS, the dataset's category ids); a runner subclass only runs the network:
`OnnxDetector` (deploy/onnx_detector.py, ONNX Runtime) and `AotiDetector`
(deploy/aoti_detector.py, an AOTInductor package with torch alone). Neither imports any
of this project's model code: copy the deploy/ folder next to the model file.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

ImageLike = Union[str, Image.Image, np.ndarray]
DEFAULT_META = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "resize": {"mode": "shorter", "size": 800, "max_size": 1333},
                "num_select": 300, "nms_iou_threshold": -1.0, "clip_boxes": False, "category_names": {},
                "label_to_category_id": None, "size_multiple": 1}


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


def pad_batch(batch: Sequence[np.ndarray], multiple: int = 1, min_size: int = 1) -> np.ndarray:
    """[N, 3, H, W] float32: the images zero-padded at the bottom / right to the largest H and W,
    rounded up to `multiple` and at least `min_size` (what an AOTInductor package needs)."""
    multiple = max(1, int(multiple))
    h = max(-(-max(x.shape[1] for x in batch) // multiple) * multiple, min_size)
    w = max(-(-max(x.shape[2] for x in batch) // multiple) * multiple, min_size)
    images = np.zeros((len(batch), 3, h, w), dtype=np.float32)
    for i, x in enumerate(batch):
        images[i, :, :x.shape[1], :x.shape[2]] = x
    return images


def as_pil(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an HxWx3 uint8 RGB array."""
    if isinstance(image, str):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
        return Image.fromarray(image, "RGB")
    return image.convert("RGB")


class ExportedDetector:
    """An exported DINO behind an images-in, detections-out call; subclasses implement `run`.

    `meta` is the dict tools/export_onnx.py stores in the model file (missing keys: DEFAULT_META).
    """

    def __init__(self, meta: Dict[str, Any], batch_size: int = 1):
        self.meta: Dict[str, Any] = dict(DEFAULT_META, **meta)
        self.category_names = {int(k): v for k, v in self.meta["category_names"].items()}
        self.batch_size = max(1, int(batch_size))

    def run(self, batch: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(pred_logits [N, Q, C], pred_boxes [N, Q, 4]) of preprocessed images."""
        raise NotImplementedError

    def preprocess(self, image: ImageLike) -> np.ndarray:
        """Resized, ImageNet-normalized float32 [3, H, W] of an image (path, PIL image or HxWx3 uint8 RGB)."""
        image = as_pil(image)
        h, w = resized_hw(image.width, image.height, self.meta["resize"])
        if (h, w) != (image.height, image.width):
            image = image.resize((w, h), Image.BILINEAR)
        x = np.asarray(image, dtype=np.float32) / np.float32(255)
        mean = np.asarray(self.meta["mean"], dtype=np.float32)
        std = np.asarray(self.meta["std"], dtype=np.float32)
        return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]], threshold: float = 0.0,
                 topk: Optional[int] = None, nms: Optional[float] = None) -> List[Dict[str, np.ndarray]]:
        """One dict (boxes xyxy pixels, scores, labels) per image; see the runner modules' docs."""
        if isinstance(images, (str, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        pil = [as_pil(im) for im in images]
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
