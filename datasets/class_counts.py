"""`num_classes` and `dn_labelbook_size` from the data ('auto', the default of the configs).

The classifier has one output per label. With the dataset's own category ids as labels (the
original DINO) it needs num_classes = largest category id + 1; with contiguous ids (detrex's
models: label i is the i-th of the sorted category ids) the number of categories. Denoising
embeds labels below dn_labelbook_size, so that must be at least num_classes: 'auto' makes it
equal. Every category of every split counts, listed or used, so a model trained on train
fits val. A number given in the config or --options is kept and checked where the data is
built (validation.check_label_space).
"""
from __future__ import annotations

import argparse
from typing import Iterable, List, Optional, Tuple

from .errors import DatasetError
from .formats import LoadedSplit

AUTO = "auto"
CLASS_COUNT_KEYS = ("num_classes", "dn_labelbook_size")


def is_auto(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def needed_num_classes(splits: Iterable[LoadedSplit], contiguous: bool) -> Tuple[int, str]:
    """(num_classes the data needs, why in words)."""
    splits = list(splits)
    ids = set()
    for split in splits:
        ids.update(c["id"] for c in split.data.get("categories", ()) if isinstance(c, dict)
                   and isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool))
    if contiguous:
        if not ids:
            raise DatasetError(f"{splits[0].where} lists no categories; contiguous_category_ids needs the "
                               f"'categories' of the json.")
        return len(ids), f"{len(ids)} categories, contiguous_category_ids"
    used = max_used_id(splits)
    top = max(ids | ({used} if used is not None else set()), default=None)
    if top is None:
        raise DatasetError(f"{splits[0].where} has no categories and no boxes; there is nothing to learn.")
    return top + 1, f"largest category id {top} + 1"


def max_used_id(splits: Iterable[LoadedSplit]) -> Optional[int]:
    top = None
    for split in splits:
        for ann in split.data.get("annotations", ()):
            cat = ann.get("category_id") if type(ann) is dict else None
            if type(cat) is int and (top is None or cat > top):
                top = cat
    return top


def settle_class_counts(args: argparse.Namespace, splits: List[LoadedSplit]) -> Optional[str]:
    """Set args.num_classes / args.dn_labelbook_size where they are 'auto'; returns the line to log
    (None when both were given)."""
    auto_nc, auto_dn = is_auto(getattr(args, "num_classes", None)), is_auto(getattr(args, "dn_labelbook_size", None))
    for key in CLASS_COUNT_KEYS:
        value = getattr(args, key, None)
        if isinstance(value, str) and not is_auto(value):
            raise DatasetError(f"{key}={value!r}: give a whole number or 'auto'.")
    if not (auto_nc or auto_dn):
        return None
    labelled = [s for s in splits if s.labelled] or splits
    need, why = needed_num_classes(labelled, bool(getattr(args, "contiguous_category_ids", False)))
    if auto_nc:
        args.num_classes = need
    if auto_dn:
        args.dn_labelbook_size = args.num_classes
    chosen = [f"{k}={getattr(args, k)}" for k, auto in zip(CLASS_COUNT_KEYS, (auto_nc, auto_dn)) if auto]
    return f"{' '.join(chosen)} set from the data (auto: {why})"
