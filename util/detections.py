"""The detections of one image, as the Detector API and the inference tool hand them out.

numpy only (no torch), so an ONNX Runtime deployment uses the same result type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np


@dataclass
class Detections:
    """Detections of one image: boxes xyxy in pixels of that image, sorted by score."""
    boxes: np.ndarray                      # float32 [N, 4]
    scores: np.ndarray                     # float32 [N]
    labels: np.ndarray                     # int64 [N]: the dataset's category ids
    names: List[str] = field(default_factory=list)
    image_size: tuple = (0, 0)             # (height, width)

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> Dict[str, Any]:
        """Plain lists, rounded, for JSON."""
        return {"boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
                "scores": [round(float(s), 4) for s in self.scores],
                "labels": [int(v) for v in self.labels], "names": list(self.names),
                "height": int(self.image_size[0]), "width": int(self.image_size[1])}
