"""Multi-scale deformable attention (Deformable DETR / DINO).

``from models.dino.ops.modules import MSDeformAttn`` is the module to use;
``backend(device)`` tells which implementation it runs for a device.
"""

from ._ext import backend, compiled_with_cuda, extension_error, get_extension, is_exporting

__all__ = ["backend", "compiled_with_cuda", "extension_error", "get_extension", "is_exporting"]
