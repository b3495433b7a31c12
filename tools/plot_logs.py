#!/usr/bin/env python
"""Plot training curves of one or more runs from their log.txt (one JSON line per epoch).

Panels: the training loss and its main terms (loss_ce, loss_bbox, loss_giou) and
the val AP and AP50 per epoch (the EMA model's dashed, when the run has one).
Several runs are overlaid, one colour each, labelled by their folder name.

Examples::

    python tools/plot_logs.py logs/DINO/R50-MS4 --out curves.png
    python tools/plot_logs.py logs/run_a logs/run_b --out compare.png --overwrite

RUN_DIR is an output dir of main.py (holding log.txt) or a log.txt file. The
picture is written atomically (a temporary file renamed into place); it never
replaces one of the inputs, and an existing --out file only with --overwrite.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOSS_KEYS = ("train_loss", "train_loss_ce", "train_loss_bbox", "train_loss_giou")
AP_PANELS = (("AP (IoU 0.50:0.95)", 0), ("AP50", 1))
FORMATS = (".png", ".pdf", ".svg", ".jpg")


class PlotError(RuntimeError):
    """A problem with the inputs or the output path; the message says what to do."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output dirs of main.py (or their log.txt files)")
    p.add_argument("--out", required=True, help=f"picture to write ({', '.join(FORMATS)})")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def log_path(run: str) -> str:
    path = os.path.join(run, "log.txt") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        what = "holds no log.txt" if os.path.isdir(run) else "does not exist"
        raise PlotError(f"{run} {what}; give a main.py --output_dir (with log.txt) or a log.txt file.")
    return path


def read_epochs(path: str) -> Tuple[List[dict], List[str]]:
    """The training lines of a log.txt by epoch (the last line of an epoch wins; --eval lines are
    left out). Lines that are not UTF-8 JSON (e.g. cut by a crash, or damaged on disk) are skipped.
    Returns (lines, what was skipped: "line N: why")."""
    by_epoch: Dict[int, dict] = {}
    skipped: List[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                skipped.append(f"line {number}: not UTF-8 text (byte {exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                skipped.append(f"line {number}: not JSON")
                continue
            if isinstance(entry, dict) and isinstance(entry.get("epoch"), int):
                by_epoch[entry["epoch"]] = entry
    return [by_epoch[e] for e in sorted(by_epoch)], skipped


def run_label(run: str) -> str:
    folder = os.path.dirname(os.path.abspath(run)) if os.path.isfile(run) else os.path.abspath(run)
    return os.path.basename(folder.rstrip(os.sep)) or folder


def check_output(out: str, inputs: Sequence[str], overwrite: bool) -> str:
    """The picture format of --out after util/atomic.py's output checks (not an input, an existing
    file only with --overwrite, its folder created)."""
    from util.atomic import check_output_file

    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS and not os.path.isdir(out) and not any(os.path.exists(p) and os.path.exists(out)
                                                                 and os.path.samefile(p, out) for p in inputs):
        raise PlotError(f"--out {out}: unknown picture format '{ext}'; use one of {', '.join(FORMATS)}.")
    check_output_file(out, inputs=inputs, overwrite=overwrite, flag="--out")
    return ext


def plot(runs: Sequence[Tuple[str, List[dict]]]):
    """A matplotlib figure with the loss and AP panels of `runs` [(label, epoch lines)]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    axes = axes.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, (label, lines) in enumerate(runs):
        color = colors[r % len(colors)]
        for ax, key in zip(axes, LOSS_KEYS):
            pts = [(e["epoch"], e[key]) for e in lines if isinstance(e.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), "-o", ms=3, color=color, label=label)
            ax.set_title(key.replace("train_", "train "))
        for ax, (title, index) in zip(axes[len(LOSS_KEYS):], AP_PANELS):
            for prefix, style, suffix in (("test", "-o", ""), ("ema_test", "--s", " (EMA)")):
                key = f"{prefix}_coco_eval_bbox"
                pts = [(e["epoch"], e[key][index]) for e in lines if isinstance(e.get(key), list)]
                if pts:
                    ax.plot(*zip(*pts), style, ms=3, color=color, label=label + suffix)
            ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_atomic(fig, out: str, ext: str) -> None:
    from util.atomic import atomic_output
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format=ext[1:], dpi=100)


def run(argv: Sequence[str] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise PlotError("matplotlib is not installed; `pip install matplotlib`.") from None
        paths = [log_path(r) for r in args.runs]
        ext = check_output(args.out, paths, args.overwrite)
        runs = []
        for run_arg, path in zip(args.runs, paths):
            lines, skipped = read_epochs(path)
            if skipped:
                more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
                print(f"warning: {path}: skipped {'; '.join(skipped[:3])}{more}", file=sys.stderr)
            if not lines:
                raise PlotError(f"{path} has no epoch lines yet (a run writes one after each epoch).")
            runs.append((run_label(run_arg), lines))
        save_atomic(plot(runs), args.out, ext)
    except (PlotError, OSError, RuntimeError) as exc:  # RuntimeError: util.atomic.OutputError
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the logs, the traceback with --debug
        if args.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, ", ".join(args.runs)), file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(runs)} runs, {sum(len(r[1]) for r in runs)} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
