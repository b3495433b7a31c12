"""Run an exported DINO model (tools/export_onnx.py) with ONNX Runtime only.

Needs numpy, pillow and onnxruntime; no torch, no project code: copy the deploy/
folder (this file and common.py) next to MODEL.onnx on the deployment machine.

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
from typing import Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from .common import (DEFAULT_META, ExportedDetector, ImageLike, as_pil, box_iou, nms,  # noqa: F401 (re-exported)
                     pad_batch, resized_hw)

_as_pil = as_pil  # the name of earlier versions


class OnnxDetector(ExportedDetector):
    """An exported DINO run by ONNX Runtime behind an images-in, detections-out call (see module doc)."""

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None, batch_size: int = 1):
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(model_path, options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        stored = self.session.get_modelmeta().custom_metadata_map.get("dino")
        super().__init__(json.loads(stored) if stored else {}, batch_size)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def run(self, batch: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(pred_logits [N, Q, C], pred_boxes [N, Q, 4]) of preprocessed images, zero-padded to one size."""
        images = pad_batch(batch)
        feeds = {"images": images}
        if "orig_sizes" in self._inputs:  # a graph exported with post-processing
            feeds["orig_sizes"] = np.array([images.shape[2:]] * len(batch), dtype=np.int64)
        logits, boxes = self.session.run(["pred_logits", "pred_boxes"], feeds)
        return logits, boxes
