#!/usr/bin/env python
"""Measure --finetune_class_map: AP after fine-tuning with the class rows transferred vs reinitialised.

1. a "pretrained" checkpoint: the demo config trained for --pretrain_epochs on synthetic shapes
   with all six classes (circle, square, triangle, cross, star, ring; ids 1..6);
2. a new dataset (other images) with three of those classes under other ids
   (1 = triangle, 2 = circle, 3 = square);
3. one fine-tuning run per arm, --finetune_epochs each, from that checkpoint:
   `transfer` (--finetune_class_map auto) and `reinit` (--finetune_ignore class_embed
   label_enc.weight, the usual recipe); same seed, same data, same everything else.

Example (CPU; about 30 minutes with the defaults on 2 cores shared with other jobs)::

    python tools/benchmark_class_transfer.py --work_dir /tmp/class_transfer

Measured so (docs/TRAINING.md): AP 18.4 with the transfer vs 9.0 reinitialised
after one fine-tuning epoch (mean of 3 seeds; the checkpoint: AP 15.5 on its 6 classes).

Prints one JSON line per arm and seed and a summary (means over --seeds); reruns reuse finished steps (each
output dir continues or is complete). Everything is written under --work_dir.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NEW_IDS = {"triangle": 1, "circle": 2, "square": 3}  # the new dataset's ids (the checkpoint has 3, 1, 2)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", required=True, help="datasets and runs go here")
    p.add_argument("--pretrain_images", type=int, default=200)
    p.add_argument("--pretrain_epochs", type=int, default=24)
    p.add_argument("--finetune_images", type=int, default=100)
    p.add_argument("--finetune_epochs", type=int, default=1)
    p.add_argument("--val_images", type=int, default=60)
    p.add_argument("--size", type=int, default=96, help="image side (square images; training scales size-16..size)")
    p.add_argument("--seeds", type=int, default=3, help="fine-tune each arm with seeds 0..N-1 (--seed)")
    p.add_argument("--device", default="cpu")
    return p


def make_datasets(work: str, opts) -> tuple:
    from datasets.synthetic import generate_synthetic_coco

    pre, new = os.path.join(work, "data_all6"), os.path.join(work, "data_subset3")
    if not os.path.exists(os.path.join(pre, "DONE")):
        generate_synthetic_coco(pre, num_train=opts.pretrain_images, num_val=opts.val_images, num_classes=6,
                                image_size=opts.size, seed=1)
        open(os.path.join(pre, "DONE"), "w").close()
    if not os.path.exists(os.path.join(new, "DONE")):
        generate_synthetic_coco(new, num_train=opts.finetune_images, num_val=opts.val_images, num_classes=3,
                                image_size=opts.size, seed=2)
        for split in ("train", "val"):  # the same classes under other ids
            path = os.path.join(new, "annotations", f"instances_{split}2017.json")
            with open(path) as f:
                data = json.load(f)
            old_to_new = {c["id"]: NEW_IDS[c["name"]] for c in data["categories"]}
            data["categories"] = sorted(({**c, "id": old_to_new[c["id"]]} for c in data["categories"]),
                                        key=lambda c: c["id"])
            for ann in data["annotations"]:
                ann["category_id"] = old_to_new[ann["category_id"]]
            data.get("info", {}).pop("category_names", None)
            with open(path, "w") as f:
                json.dump(data, f)
        open(os.path.join(new, "DONE"), "w").close()
    return pre, new


def train(coco: str, out: str, epochs: int, num_classes: int, opts, *extra: str) -> dict:
    """main.py with the demo config at image side `opts.size`; returns the last epoch's log.txt line
    (a finished run is reused: main.py finds nothing to train)."""
    s = opts.size
    argv = [sys.executable, "main.py", "-c", "config/DINO/DINO_demo.py", "--coco_path", coco, "--output_dir", out,
            "--device", opts.device, "--num_workers", "0", "--print_freq", "25", *extra,
            "--options", f"epochs={epochs}", f"num_classes={num_classes}", f"dn_labelbook_size={num_classes}",
            f"data_aug_scales=[{s - 16},{s}]", f"data_aug_max_size={s + 16}", f"data_aug_scales2_resize=[{s - 16},{s}]",
            f"data_aug_scales2_crop=[{s - 32},{s - 16}]", "lr_drop=100"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.time()
    with open(out + ".log", "a") as log:
        proc = subprocess.run(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed (status {proc.returncode}); see {out}.log")
    with open(os.path.join(out, "log.txt")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    last = [e for e in lines if "epoch" in e][-1]
    print(f"  {os.path.basename(out)}: {time.time() - start:.0f} s", flush=True)
    return last


def main(argv=None) -> int:
    opts = get_parser().parse_args(argv)
    work = os.path.abspath(opts.work_dir)
    os.makedirs(work, exist_ok=True)
    pre_data, new_data = make_datasets(work, opts)
    pre_out = os.path.join(work, "pretrain")
    pre = train(pre_data, pre_out, opts.pretrain_epochs, 7, opts)
    print(json.dumps({"arm": "pretrain (6 classes)", "AP": pre["test_coco_eval_bbox"][0],
                      "AP50": pre["test_coco_eval_bbox"][1]}), flush=True)
    ckpt = os.path.join(pre_out, "checkpoint.pth")
    arms = {
        "transfer": ["--finetune_class_map", "auto"],
        "reinit": ["--finetune_ignore", "class_embed", "label_enc.weight"],
    }
    results = {name: [] for name in arms}
    for seed in range(opts.seeds):
        for name, extra in arms.items():
            out = os.path.join(work, f"finetune_{name}_pre{opts.pretrain_epochs}ep_seed{seed}")
            last = train(new_data, out, opts.finetune_epochs, 4, opts, "--pretrain_model_path", ckpt,
                         "--seed", str(seed), *extra)
            results[name].append(last["test_coco_eval_bbox"][:2])
            print(json.dumps({"arm": name, "seed": seed, "AP": last["test_coco_eval_bbox"][0],
                              "AP50": last["test_coco_eval_bbox"][1],
                              "per_class": last.get("test_coco_eval_per_class")}), flush=True)
    mean = {name: [100 * sum(v[i] for v in vals) / len(vals) for i in (0, 1)] for name, vals in results.items()}
    print(f"after {opts.finetune_epochs} fine-tuning epoch(s), mean of {opts.seeds} seed(s): AP "
          f"{mean['transfer'][0]:.1f} with the transfer vs {mean['reinit'][0]:.1f} reinitialised (AP50 "
          f"{mean['transfer'][1]:.1f} vs {mean['reinit'][1]:.1f}); pretrained checkpoint: AP {100 * pre['test_coco_eval_bbox'][0]:.1f} "
          f"on its own 6 classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
