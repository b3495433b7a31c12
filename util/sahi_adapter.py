"""Run this project's detector from SAHI (`pip install sahi`; optional, not in requirements.txt).

    from detector import Detector
    from util.sahi_adapter import DinoSahiModel
    from sahi.predict import get_sliced_prediction

    model = DinoSahiModel(model=Detector.from_checkpoint("demo_output/checkpoint.pth"), confidence_threshold=0.3)
    result = get_sliced_prediction("large.jpg", model, slice_height=640, slice_width=640,
                                   overlap_height_ratio=0.2, overlap_width_ratio=0.2)

SAHI hands over numpy RGB images (tiles, or the whole image); SAHI's batched slicing
(`batch_size=`) becomes one batched call of the Detector. The project's own slicing
(`Detector.sliced`, `tools/inference.py --slice`) needs no SAHI: it uses supervision's
slicer, which the `trackers` requirement installs anyway; SAHI would add shapely, fire
and its own OpenCV pin for the same result, so it stays optional.

The detector is passed in (`model=`: a Detector, or anything called like it with
`category_names`), so this module needs nothing above util/.
"""
from __future__ import annotations

import inspect
from typing import Any, List, Optional

import numpy as np
from PIL import Image
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction


class DinoSahiModel(DetectionModel):
    """A SAHI DetectionModel over a DINO Detector (pass it as `model=`)."""

    def load_model(self) -> None:
        raise ValueError("DinoSahiModel takes a loaded detector: DinoSahiModel(model=Detector.from_checkpoint(CKPT)) "
                         "(model_path is not read)")

    def set_model(self, model: Any, **kwargs: Any) -> None:
        self.model = model
        if self.category_mapping is None:
            self.category_mapping = {str(k): v for k, v in model.category_names.items()}

    def perform_inference(self, image: np.ndarray) -> None:
        self._original_predictions = [self._detect([image])[0]]

    def perform_batch_inference(self, images: List[np.ndarray]) -> None:
        self._original_predictions = self._detect(images)

    def _detect(self, images: List[np.ndarray]) -> list:
        pictures = [Image.fromarray(np.ascontiguousarray(im[:, :, :3]).astype(np.uint8)) for im in images]
        if "batch_size" in inspect.signature(self.model.__call__).parameters:
            return list(self.model(pictures, threshold=float(self.confidence_threshold), batch_size=len(pictures)))
        return [self.model(p, threshold=float(self.confidence_threshold)) for p in pictures]  # e.g. ONNX Runtime

    @property
    def num_categories(self) -> int:
        return len(self.category_mapping or {})

    @property
    def has_mask(self) -> bool:
        return False

    @property
    def category_names(self) -> list:
        return list((self.category_mapping or {}).values())

    def _create_object_prediction_list_from_original_predictions(
            self, shift_amount_list: Optional[list] = None, full_shape_list: Optional[list] = None) -> None:
        shifts = shift_amount_list or [[0, 0]]
        if shifts and isinstance(shifts[0], (int, float)):  # one image: [x, y]
            shifts = [shifts]
        shapes = full_shape_list
        if shapes and isinstance(shapes[0], (int, float)):
            shapes = [shapes]
        per_image = []
        for k, found in enumerate(self._original_predictions or []):
            shift = shifts[k] if k < len(shifts) else [0, 0]
            shape = shapes[k] if shapes and k < len(shapes) else None
            per_image.append([ObjectPrediction(bbox=[float(v) for v in box], category_id=int(label),
                                               category_name=str(name), score=float(score),
                                               shift_amount=list(shift), full_shape=shape)
                              for box, label, name, score in zip(found.boxes, found.labels, found.names, found.scores)
                              if score >= self.confidence_threshold and box[2] > box[0] and box[3] > box[1]])
        self._object_prediction_list_per_image = per_image
