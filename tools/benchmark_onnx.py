#!/usr/bin/env python
"""Whole-detector speed: ONNX Runtime (CPU) and an AOTInductor package against this project's PyTorch CPU path.

    python tools/benchmark_onnx.py                                   # DINO-R50-4scale, 800x1333, batch 1
    python tools/benchmark_onnx.py -c config/DINO/DINO_demo.py --size 128 160 --repeats 5
    python tools/benchmark_onnx.py --aoti                            # + the AOTInductor package (compiles minutes)
    python tools/benchmark_onnx.py --aoti --aoti-operator            # the package calling the compiled operator

Builds the config with seeded random weights (speed does not depend on their
values), exports it with models/dino/export.py (traced at a small size; H and W
are dynamic), then runs the same image through PyTorch (eval, no_grad, the
compiled MultiScaleDeformableAttention op when built, folded batch norm and
fused linear layers: as tools/inference.py runs it) and through ONNX Runtime,
interleaved run by run after one warm-up each, and prints the median times and
their ratio. All use --threads threads.

--aoti also packages the model with torch.export + AOTInductor (models/dino/export_aoti.py) and
runs the package in the same rotation; its inputs must be multiples of 64, so the image is then
zero-padded to that size for every runner (the same work for all three).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(config: str, options) -> torch.nn.Module:
    from models import build_model as build_model_main
    from util.args import apply_config, get_args_parser, load_config

    args = get_args_parser().parse_args(["-c", config, "--device", "cpu"])
    args.options = options or None
    cfg, _ = load_config(args)
    apply_config(cfg, args)
    args.device = "cpu"
    torch.manual_seed(0)
    model, _, _ = build_model_main(args)
    return model.eval()


def main(argv=None) -> int:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config_file", default="config/DINO/DINO_4scale.py")
    p.add_argument("--options", nargs="+", action=DictAction, default={})
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--export-size", type=int, nargs=2, default=[320, 480], metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--aoti", action="store_true", help="also an AOTInductor package (models/dino/export_aoti.py)")
    p.add_argument("--aoti-operator", action="store_true",
                   help="with --aoti: the package calls the compiled deformable-attention operator (no gather path)")
    opt = p.parse_args(argv)

    import onnxruntime as ort

    from models.dino import ops
    from models.dino.export import export_onnx
    from tools.export_onnx import rows_matched

    torch.set_num_threads(opt.threads)
    model = build(opt.config_file, opt.options)
    image = torch.randn(3, *opt.size, generator=torch.Generator().manual_seed(1))
    padded = image[None]  # what the exported models get; PyTorch gets the same with its padding mask
    if opt.aoti:
        from models.dino.export_aoti import pad_images
        padded = pad_images(padded)
        print(f"image zero-padded to {padded.shape[2]}x{padded.shape[3]} (multiples of 64, for the package)")
    mask = torch.ones(padded.shape[0], *padded.shape[2:], dtype=torch.bool)
    mask[:, :opt.size[0], :opt.size[1]] = False
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        start = time.perf_counter()
        export_onnx(model, path, torch.randn(1, 3, *opt.export_size))
        print(f"exported in {time.perf_counter() - start:.0f} s")
        package = export_package(model, folder, opt) if opt.aoti else None
        from models.dino.inference_prep import prepare_for_inference
        prepare_for_inference(model, torch.device("cpu"), amp=False)  # PyTorch as tools/inference.py runs it
        options = ort.SessionOptions()
        options.intra_op_num_threads = opt.threads
        # ONNX Runtime's threads spin after a run by default, which would slow the PyTorch run after it
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        from util.misc import NestedTensor

        def run_torch():
            with torch.no_grad():
                return model(NestedTensor(padded, mask))

        def run_ort():
            return session.run(["pred_logits", "pred_boxes"], {"images": padded.numpy()})

        runners = {"pytorch": run_torch, "onnxruntime": run_ort}
        if package is not None:
            runners["aoti"] = lambda: package(padded)
        ref, got = run_torch(), run_ort()  # warm-up
        ref_rows = np.concatenate([ref["pred_logits"][0].numpy(), ref["pred_boxes"][0].numpy()], -1)
        matched = rows_matched(ref_rows, np.concatenate([got[0][0], got[1][0]], -1))
        if package is not None:
            got_aoti = runners["aoti"]()
            matched_aoti = rows_matched(ref_rows, np.concatenate([got_aoti[0][0].numpy(), got_aoti[1][0].numpy()], -1))
        times = {name: [] for name in runners}
        for _ in range(opt.repeats):
            for name, fn in runners.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{opt.config_file} {opt.size[0]}x{opt.size[1]} (run at {padded.shape[2]}x{padded.shape[3]}), batch 1, {opt.threads} threads, median of {opt.repeats} "
          f"(PyTorch MSDeformAttn path: {ops.backend('cpu')}; ONNX Runtime {ort.__version__})")
    for name in runners:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:12} {med[name]:7.2f} s/image  (runs: {runs})")
    print(f"  ratio PyTorch / ONNX Runtime: {med['pytorch'] / med['onnxruntime']:.2f}x; "
          f"query rows matched (as the parity checker): {matched:.1%}")
    if package is not None:
        print(f"  ratio PyTorch / AOTInductor: {med['pytorch'] / med['aoti']:.2f}x, ONNX Runtime / AOTInductor: "
              f"{med['onnxruntime'] / med['aoti']:.2f}x; query rows matched: {matched_aoti:.1%}")
    return 0


def export_package(model: torch.nn.Module, folder: str, opt):
    """The model as an AOTInductor package (exported before prepare_for_inference, as the tool does), loaded."""
    from models.dino.export_aoti import export_aoti, round_up

    size = [max(round_up(v), 128) for v in opt.export_size]
    path = os.path.join(folder, "model.pt2")
    start = time.perf_counter()
    export_aoti(model, path, torch.randn(2, 3, *size), operator=opt.aoti_operator)
    what = "the compiled operator" if opt.aoti_operator else "the gather path"
    print(f"AOTInductor package ({what} for the deformable attention) compiled in {time.perf_counter() - start:.0f} s")
    return torch._inductor.aoti_load_package(path)


if __name__ == "__main__":
    sys.exit(main())
