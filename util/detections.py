"""The detections of one image, as the Detector API and the inference tool hand them out.

numpy only (no torch), so an ONNX Runtime deployment uses the same result type.
`to_supervision()` / `from_supervision()` convert to and from supervision's
`sv.Detections`, the type the `trackers` library and supervision's slicer work on
(supervision is imported only when they are called).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np


@dataclass
class Detections:
    """Detections of one image: boxes xyxy in pixels of that image, sorted by score."""
    boxes: np.ndarray                      # float32 [N, 4]
    scores: np.ndarray                     # float32 [N]
    labels: np.ndarray                     # int64 [N]: the dataset's category ids
    names: List[str] = field(default_factory=list)
    image_size: tuple = (0, 0)             # (height, width)
    track_ids: Optional[np.ndarray] = None  # int64 [N] when tracked: -1 for a track not confirmed yet

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> Dict[str, Any]:
        """Plain lists, rounded, for JSON (with "track_ids" when tracked)."""
        out = {"boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
               "scores": [round(float(s), 4) for s in self.scores],
               "labels": [int(v) for v in self.labels], "names": list(self.names),
               "height": int(self.image_size[0]), "width": int(self.image_size[1])}
        if self.track_ids is not None:
            out["track_ids"] = [int(v) for v in self.track_ids]
        return out

    def to_supervision(self):
        """These detections as `supervision.Detections` (class_id = category id, the class names
        in data["class_name"], tracker_id when tracked), for trackers and supervision's tools."""
        import supervision as sv

        return sv.Detections(xyxy=np.asarray(self.boxes, np.float32).reshape(-1, 4),
                             confidence=np.asarray(self.scores, np.float32),
                             class_id=np.asarray(self.labels, np.int64),
                             tracker_id=None if self.track_ids is None else np.asarray(self.track_ids, np.int64),
                             data={"class_name": np.asarray(self.names, dtype=object)})

    @classmethod
    def from_supervision(cls, detections, image_size: tuple,
                         category_names: Optional[Dict[int, str]] = None) -> "Detections":
        """Detections from a `supervision.Detections` (sorted by score); names from its
        data["class_name"], else from `category_names`."""
        n = len(detections)
        scores = np.ones(n, np.float32) if detections.confidence is None else detections.confidence
        labels = np.zeros(n, np.int64) if detections.class_id is None else detections.class_id
        names = detections.data.get("class_name")
        if names is None:
            names = [(category_names or {}).get(int(c), str(int(c))) for c in labels]
        order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
        track_ids = None if detections.tracker_id is None else np.asarray(detections.tracker_id, np.int64)[order]
        return cls(np.asarray(detections.xyxy, np.float32).reshape(-1, 4)[order],
                   np.asarray(scores, np.float32)[order], np.asarray(labels, np.int64)[order],
                   [str(names[i]) for i in order], tuple(image_size), track_ids)
