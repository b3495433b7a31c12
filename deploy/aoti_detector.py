"""Run an AOTInductor package of DINO (tools/export_onnx.py --format aoti) with torch alone.

Needs torch, numpy and pillow; none of this project's model code: copy the deploy/ folder
(this file and common.py) next to MODEL.pt2. The package is compiled for the CPU kind and the
torch version it was exported with; it runs only there.

    from deploy.aoti_detector import AotiDetector
    detector = AotiDetector("dino.pt2")                   # num_threads / batch_size optional
    [result] = detector("street.jpg", threshold=0.3)      # or a PIL image, an HxWx3 uint8 RGB array, or a list
    result["boxes"], result["scores"], result["labels"]   # as deploy/onnx_detector.OnnxDetector's

A package exported with --aoti-operator calls the compiled deformable-attention operator
(torch.ops.dino.ms_deform_attn): give `op_library=` the path of its shared library (the
MultiScaleDeformableAttention*.so built in models/dino/ops, or `pip install ./models/dino/ops`
on the deployment machine, which this runner then imports by itself). Packages exported
without it need nothing but torch.

Loading a package runs the compiled code inside it (it is a program, not data): load only
packages you exported yourself or got from someone you would run a program from.

The images are pre-processed as evaluation does (deploy/common.py), then zero-padded to
multiples of the package's `size_multiple` (64: the sizes it was compiled for); the padding is
masked as a batch's padding is. Interface as OnnxDetector: `detector(images, threshold, topk,
nms)`, `detector.preprocess(image)`, `detector.run(batch)`, `detector.category_names`.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .common import ExportedDetector, pad_batch


def load_operator(op_library: Optional[str] = None) -> bool:
    """Register torch.ops.dino.ms_deform_attn from `op_library` (a path), else from an installed
    MultiScaleDeformableAttention module when there is one; True when the operator is registered."""
    if op_library:
        torch.ops.load_library(op_library)
    else:
        try:
            import MultiScaleDeformableAttention  # noqa: F401 - importing registers the operator
        except ImportError:
            pass
    return hasattr(torch.ops.dino, "ms_deform_attn")


class AotiDetector(ExportedDetector):
    """An AOTInductor-packaged DINO behind an images-in, detections-out call (see module doc)."""

    def __init__(self, package_path: str, num_threads: Optional[int] = None, batch_size: int = 1,
                 op_library: Optional[str] = None):
        if num_threads:
            torch.set_num_threads(int(num_threads))
        load_operator(op_library)
        try:
            self.package = torch._inductor.aoti_load_package(package_path)
        except RuntimeError as exc:
            if "dino::ms_deform_attn" in str(exc):
                raise RuntimeError(f"{package_path} calls the compiled MultiScaleDeformableAttention operator: pass "
                                   f"op_library= the path of its shared library, or pip install ./models/dino/ops "
                                   f"here") from None
            raise
        stored = self.package.get_metadata().get("dino")
        super().__init__(json.loads(stored) if stored else {}, batch_size)
        self.size_multiple = int(self.meta.get("size_multiple") or 64)
        self._with_sizes = "orig_sizes" in self.meta.get("input_names", [])

    def run(self, batch: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(pred_logits [N, Q, C], pred_boxes [N, Q, 4]) of preprocessed images, padded for the package."""
        images = pad_batch(batch, self.size_multiple, min_size=2 * self.size_multiple)
        inputs = [torch.from_numpy(images)]
        if self._with_sizes:
            inputs.append(torch.tensor([images.shape[2:]] * len(batch), dtype=torch.int64))
        with torch.inference_mode():
            outputs = self.package(*inputs)
        return outputs[0].numpy(), outputs[1].numpy()
