"""Per-class AP and AP50 from an accumulated COCO evaluation, and the table printed after it.

`per_class_ap(coco_eval, names)` reads `coco_eval.eval['precision']`
(pycocotools' [IoU thresholds, recall points, categories, area ranges, max
detections] array, -1 where a category has no ground truth) and returns, per
category name, `{'AP': mean precision over IoU 0.50:0.95 and all recall points,
'AP50': the same at IoU 0.50}` for area 'all' and the largest max-detections
setting: the numbers `summarize()` averages over categories. A category without
ground truth gets None (JSON null) rather than pycocotools' -1.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

__all__ = ["per_class_ap", "format_per_class_table"]


def _mean_valid(values: np.ndarray) -> Optional[float]:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def per_class_ap(coco_eval: Any, names: Mapping[int, str]) -> Dict[str, Dict[str, Optional[float]]]:
    """{class name: {'AP': .., 'AP50': ..}} in category-id order (see module doc); {} when the
    evaluation ignored categories (useCats=0) or has not been accumulated."""
    params = coco_eval.params
    precision = (getattr(coco_eval, "eval", None) or {}).get("precision")
    if precision is None or not params.useCats:
        return {}
    area = list(params.areaRngLbl).index("all")
    iou50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    seen: Dict[str, int] = {}
    for cat_id in params.catIds:
        name = str(names.get(cat_id, cat_id))
        seen[name] = seen.get(name, 0) + 1
    out: Dict[str, Dict[str, Optional[float]]] = {}
    for k, cat_id in enumerate(params.catIds):
        name = str(names.get(cat_id, cat_id))
        if seen[name] > 1:  # two categories with one name: keep both apart
            name = f"{name} (id {cat_id})"
        per_cat = precision[:, :, k, area, -1]
        out[name] = {"AP": _mean_valid(per_cat), "AP50": _mean_valid(per_cat[iou50])}
    return out


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_per_class_table(per_class: Mapping[str, Mapping[str, Optional[float]]], columns: int = 3) -> str:
    """A text table with `columns` (category, AP, AP50) triples per row, values in percent
    ('-': no ground truth of that class)."""
    if not per_class:
        return ""
    cells = [(name, _cell(v.get("AP")), _cell(v.get("AP50"))) for name, v in per_class.items()]
    name_w = max(8, max(len(c[0]) for c in cells))
    header = " | ".join(f"{'category':<{name_w}} {'AP':>5} {'AP50':>5}" for _ in range(min(columns, len(cells))))
    lines = [header, "-" * len(header)]
    for start in range(0, len(cells), columns):
        row = cells[start:start + columns]
        lines.append(" | ".join(f"{n:<{name_w}} {ap:>5} {ap50:>5}" for n, ap, ap50 in row))
    return "\n".join(lines)
