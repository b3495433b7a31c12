"""The doctor's verdict on a whole dataset (datasets/doctor.py does the per-split scans).

`examine(path, settings)` -> DoctorReport: the format found, every split's scan, the label
space against the settings (the same check and message as training), whether training would
refuse the data, and the settings to use. `report_text` and `report_dict` render it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

from .class_counts import is_auto, needed_num_classes
from .doctor import KINDS, SEVERITY_ORDER, SplitScan, check_image_files, check_structure, scan_split
from .errors import DatasetError
from .formats import LoadedSplit, open_dataset
from .validation import AnnotationReport, check_label_space


@dataclass
class Settings:
    """What training would use: 'auto' or numbers, as in a config."""

    num_classes: Any = "auto"
    dn_labelbook_size: Any = "auto"
    contiguous_category_ids: bool = False
    use_dn: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        return cls(getattr(args, "num_classes", "auto"), getattr(args, "dn_labelbook_size", "auto"),
                   bool(getattr(args, "contiguous_category_ids", False)), bool(getattr(args, "use_dn", True)))


@dataclass
class DoctorReport:
    path: str
    found: str = ""                       # the one line of the format found
    format: str = ""
    splits: List[SplitScan] = field(default_factory=list)
    refusals: List[str] = field(default_factory=list)   # why training would stop
    settings: List[str] = field(default_factory=list)   # the settings to use, one per line
    num_classes_needed: Optional[int] = None

    @property
    def refused(self) -> bool:
        return bool(self.refusals)


def _failed_split(name: str, where: str, message: str) -> SplitScan:
    scan = SplitScan(name, where, "")
    scan.add("format_error", message)
    return scan


def examine(path: str, settings: Optional[Settings] = None, check_images: bool = True, decode: bool = False,
            progress: Optional[Callable[[Iterable, int], Iterable]] = None) -> DoctorReport:
    """Everything the doctor knows about the dataset at `path` (see module doc)."""
    settings = settings or Settings()
    report = DoctorReport(path)
    try:
        source = open_dataset(path, flag="dataset")
    except DatasetError as exc:
        report.refusals.append(str(exc))
        return report
    report.found, report.format = source.describe(), source.format
    loaded: List[LoadedSplit] = []
    for name in source.splits:
        try:
            split = source.load(name)
        except DatasetError as exc:
            report.splits.append(_failed_split(name, source.root, str(exc)))
            continue
        loaded.append(split)
        scan = scan_split(split)
        check_structure(scan, split)
        if check_images:
            check_image_files(scan, decode=decode, exif=source.exif_transpose, progress=progress)
        report.splits.append(scan)
    _label_space(report, loaded, settings)
    _verdict(report, source.has("val"), settings)
    return report


def _label_space(report: DoctorReport, loaded: List[LoadedSplit], settings: Settings) -> None:
    if not loaded:
        return
    try:
        report.num_classes_needed, why = needed_num_classes(loaded, settings.contiguous_category_ids)
    except DatasetError as exc:
        report.refusals.append(str(exc))
        return
    nc = report.num_classes_needed if is_auto(settings.num_classes) else settings.num_classes
    dn = nc if is_auto(settings.dn_labelbook_size) else settings.dn_labelbook_size
    scans = {scan.name: scan for scan in report.splits}
    for split in loaded:
        scan = scans[split.name]
        if not split.labelled:
            continue
        check = AnnotationReport(ann_file=split.where, max_category_id=scan.max_category_id,
                                 max_category_ann=scan.max_category_ann)
        try:
            check_label_space(check, nc, dn, settings.use_dn,
                              num_categories=len(scan.class_names) if settings.contiguous_category_ids else None)
        except DatasetError as exc:
            scan.add("label_space", str(exc))
    auto = is_auto(settings.num_classes) and is_auto(settings.dn_labelbook_size)
    report.settings.append(f"num_classes / dn_labelbook_size: {'auto (the default) gives' if auto else 'need'} "
                           f"{report.num_classes_needed} ({why})")


def _verdict(report: DoctorReport, has_val: bool, settings: Settings) -> None:
    for scan in report.splits:
        for kind, finding in scan.findings.items():
            if KINDS[kind][0] == "refused":
                report.refusals.append(f"{scan.name}: {finding.count} {KINDS[kind][1]}"
                                       + (f": {finding.examples[0]}" if finding.examples else ""))
    command = f"python main.py -c CONFIG --data {report.path}"
    if not has_val and report.splits:
        command += " --val_split 0.1"
        report.settings.append("no validation split: --val_split 0.1 holds out 10% of the training images")
    if not (is_auto(settings.num_classes) and is_auto(settings.dn_labelbook_size)) and report.num_classes_needed:
        n = report.num_classes_needed
        command += f" --options num_classes={n} dn_labelbook_size={n}" if any(
            "label_space" in s.findings for s in report.splits) else ""
    report.settings.insert(0, command)


def report_dict(report: DoctorReport) -> Dict[str, Any]:
    """The report as plain data (report.json)."""
    return {
        "dataset": report.path, "found": report.found, "format": report.format,
        "training_would_refuse": report.refused, "refusals": report.refusals, "settings": report.settings,
        "num_classes_needed": report.num_classes_needed,
        "splits": [{
            "split": s.name, "labels": s.where, "images": s.num_images, "boxes": s.num_boxes,
            "classes": [{"id": c, "name": s.class_names.get(c, "(not listed)"), "images": v[0], "boxes": v[1]}
                        for c, v in sorted(s.per_class.items(), key=lambda kv: (kv[0] is None, str(kv[0])))],
            "problems": [{"kind": k, "severity": KINDS[k][0], "what": KINDS[k][1], "handling": KINDS[k][2],
                          "count": f.count, "examples": f.examples} for k, f in _ordered(s.findings)],
        } for s in report.splits],
    }


def _ordered(findings):
    return sorted(findings.items(), key=lambda kv: (SEVERITY_ORDER.index(KINDS[kv[0]][0]), kv[0]))


def report_text(report: DoctorReport) -> str:
    """The report for people: per split the classes and the problems, then the settings and the verdict."""
    lines = [f"dataset: {report.found or report.path}"]
    for s in report.splits:
        lines.append(f"\n{s.name}: {s.num_images} images, {s.num_boxes} boxes, {len(s.class_names)} classes "
                     f"({s.where})")
        if s.per_class:
            lines.append(f"  {'id':>4}  {'class':<24} {'images':>7} {'boxes':>7}")
            for c, (n_img, n_box) in sorted(s.per_class.items(), key=lambda kv: str(kv[0]).zfill(12)):
                lines.append(f"  {c!s:>4}  {s.class_names.get(c, '(not listed)')[:24]:<24} {n_img:>7} {n_box:>7}")
        for kind, f in _ordered(s.findings):
            severity, what, handling = KINDS[kind]
            example = f" (e.g. {'; '.join(f.examples[:3])})" if f.examples else ""
            lines.append(f"  [{severity}] {f.count} {what}: {handling}{example}")
    lines.append("\nsettings:")
    lines += [f"  {line}" for line in report.settings]
    if report.refused:
        lines.append("\nverdict: training would REFUSE this data:")
        lines += [f"  {r}" for r in report.refusals]
    else:
        lines.append("\nverdict: training would accept this data" + (
            " (with the repairs above)" if any(KINDS[k][0] == "repaired" for s in report.splits for k in s.findings)
            else ""))
    return "\n".join(lines)
