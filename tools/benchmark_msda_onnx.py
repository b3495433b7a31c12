#!/usr/bin/env python
"""Choose the ONNX form of multi-scale deformable attention: GridSample vs gather.

    python tools/benchmark_msda_onnx.py                      # encoder and decoder, batch 1
    python tools/benchmark_msda_onnx.py --cases decoder --repeats 10 --threads 2

Both forms are exported (opset 18) as standalone graphs of the sampling core at
DINO-R50 4-scale sizes for an 800x1333 image (tools/benchmark_msda.py's inputs:
reference points plus offsets of a few pixels):

  grid_sample  ms_deform_attn_core_pytorch: one GridSample per level (the usual workaround)
  gather       ms_deform_attn_core_gather: four Gathers of corner rows + MatMul (the export path)

and run with ONNX Runtime on the CPU, interleaved run by run, median of
--repeats. Accuracy: largest difference of each graph's output (float32) from a
float64 reference computed in PyTorch. Also printed: the graph's operator types,
whose support in TensorRT / OpenVINO docs/EXPORT.md discusses.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.benchmark_msda import make_inputs  # noqa: E402
from models.dino.ops.functions import ms_deform_attn_core_gather, ms_deform_attn_core_pytorch  # noqa: E402


class GridSampleCore(torch.nn.Module):
    def forward(self, value, shapes, starts, loc, attn):
        return ms_deform_attn_core_pytorch(value, shapes, loc, attn)


class GatherCore(torch.nn.Module):
    def forward(self, value, shapes, starts, loc, attn):
        return ms_deform_attn_core_gather(value, shapes, starts, loc, attn)


FORMS = {"grid_sample": GridSampleCore, "gather": GatherCore}
NAMES = ["value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"]


def export(form: str, inputs, folder: str) -> str:
    path = os.path.join(folder, f"{form}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FORMS[form](), tuple(inputs), path, input_names=NAMES, output_names=["output"],
                          opset_version=18, dynamo=False)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    opt = p.parse_args(argv)

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = opt.threads
    print(f"ONNX Runtime {ort.__version__}, {opt.threads} threads, batch {opt.batch}, median of {opt.repeats}")
    print(f"{'case':8} {'form':12} {'median ms':>10} {'max |err| vs float64':>22}  operators")
    with tempfile.TemporaryDirectory() as folder:
        for case in opt.cases:
            inputs = make_inputs(case, opt.batch, torch.float32, uniform=False)
            ref = ms_deform_attn_core_pytorch(*[t.double() if t.is_floating_point() else t
                                                for t in (inputs[0], inputs[1], inputs[3], inputs[4])])
            feeds = {n: t.numpy() for n, t in zip(NAMES, inputs)}
            sessions, ops = {}, {}
            for form in FORMS:
                path = export(form, inputs, folder)
                graph = onnx.load(path)
                used = {i.name for i in graph.graph.input}
                ops[form] = Counter(n.op_type for n in graph.graph.node)
                sessions[form] = (ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]),
                                  {k: v for k, v in feeds.items() if k in used})
            times = {form: [] for form in FORMS}
            errors = {}
            for form, (sess, f) in sessions.items():  # warm-up, accuracy
                out = sess.run(None, f)[0]
                errors[form] = float(np.abs(out.astype(np.float64) - ref.numpy()).max())
            for _ in range(opt.repeats):
                for form, (sess, f) in sessions.items():
                    start = time.perf_counter()
                    sess.run(None, f)
                    times[form].append(time.perf_counter() - start)
            for form in FORMS:
                main_ops = ", ".join(f"{k} {v}" for k, v in ops[form].most_common()
                                     if k not in ("Constant", "Shape", "Unsqueeze", "Concat", "Reshape"))
                print(f"{case:8} {form:12} {1000 * statistics.median(times[form]):10.1f} {errors[form]:22.2e}  "
                      f"{main_ops}")
            ratio = statistics.median(times["grid_sample"]) / statistics.median(times["gather"])
            print(f"{case:8} grid_sample / gather time: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
