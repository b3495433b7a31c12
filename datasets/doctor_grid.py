"""A picture of the worst offenders: the images with the most (and worst) problem boxes, each
drawn with those boxes coloured by what the loader does with them (red: training refuses,
orange: repaired - clipped or dropped, yellow: kept but suspicious) and captioned."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from PIL import Image, ImageDraw

from .doctor import WEIGHT, KINDS, SplitScan
from .errors import DatasetError
from .image_io import load_image

COLORS = {"refused": (230, 25, 45), "repaired": (255, 140, 0), "warning": (255, 225, 25)}
TILE = 256
CAPTION = 30


def worst_offenders(scans: List[SplitScan], limit: int) -> List[Tuple[SplitScan, Any]]:
    """(scan, image id) of the `limit` images whose problems weigh most (ties: file name)."""
    ranked = []
    for scan in scans:
        for image_id, problems in scan.offenders.items():
            weight = sum(WEIGHT[KINDS[kind][0]] for kind, _ in problems)
            ranked.append((-weight, str(scan.images.get(image_id, {}).get("file_name")), scan.name, scan, image_id))
    ranked.sort(key=lambda r: r[:3])
    return [(r[3], r[4]) for r in ranked[:limit]]


def _tile(scan: SplitScan, image_id: Any) -> Optional[Image.Image]:
    info = scan.images[image_id]
    try:
        img = load_image(os.path.join(scan.image_root, str(info.get("file_name"))))
    except DatasetError:
        return None
    scale = min(TILE / img.width, (TILE - CAPTION) / img.height)
    shown = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    tile = Image.new("RGB", (TILE, TILE), (32, 32, 32))
    tile.paste(shown, (0, 0))
    draw = ImageDraw.Draw(tile)
    kinds = []
    for kind, box in scan.offenders[image_id]:
        kinds.append(kind)
        if box is not None and all(v == v for v in box):
            x0, y0, x1, y1 = (v * scale for v in box)
            x0, x1 = sorted((x0, x1))
            y0, y1 = sorted((y0, y1))
            draw.rectangle([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], outline=COLORS[KINDS[kind][0]], width=2)
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    draw.text((2, TILE - CAPTION + 2), f"{scan.name}: {info.get('file_name')}"[:42], fill=(255, 255, 255))
    draw.text((2, TILE - CAPTION / 2), ", ".join(f"{n} {k}" for k, n in counts.items())[:42], fill=(200, 200, 200))
    return tile


def offenders_grid(scans: List[SplitScan], limit: int = 16, columns: int = 4) -> Optional[Image.Image]:
    """The grid picture, or None when no image has a problem that can be drawn."""
    tiles = [t for t in (_tile(scan, image_id) for scan, image_id in worst_offenders(scans, limit)) if t]
    if not tiles:
        return None
    columns = min(columns, len(tiles))
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * TILE, rows * TILE), (0, 0, 0))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
    return grid
