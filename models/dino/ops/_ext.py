"""Loading the compiled ``MultiScaleDeformableAttention`` extension, which registers the
operators ``torch.ops.dino.ms_deform_attn`` and ``torch.ops.dino.ms_deform_attn_backward``,
and choosing the execution path of the multi-scale deformable attention op.

The extension is looked up, in this order:

1. a shared object built in place next to ``setup.py``
   (``python setup.py build_ext --inplace`` or ``pip install -e``), so that a
   rebuilt checkout is never shadowed by an older installed copy;
2. ``import MultiScaleDeformableAttention`` (after ``pip install ./models/dino/ops``
   or ``python setup.py build install``).

Loading it registers the operators' schemas and CPU/CUDA kernels with PyTorch's
dispatcher; :func:`get_extension` then adds their fake kernels and autograd formula
(``_library.register``). An extension that cannot be loaded (missing, built against
another PyTorch, an older build without the operators) is reported by
:func:`extension_error` and every device takes the PyTorch path (logged once).

The environment variable ``DINO_MSDA_BACKEND`` selects the path:

* ``auto`` (default): compiled op when it supports the tensor's device, else PyTorch;
* ``pytorch``: always the pure PyTorch (``grid_sample``) implementation;
* ``compiled``: always the compiled op, error if it is not available;
* ``gather``: always the gather-based sampling of ``ms_deform_attn_gather``.

While a model is being exported (``torch.onnx.export``, ``torch.export``,
``torch.jit.trace``) the path is ``gather``: it traces to plain ONNX ops with
dynamic image sizes (docs/EXPORT.md). Inside :func:`operator_in_export`,
``torch.export`` keeps the operator instead (AOTInductor packages that call
the compiled kernel).
"""

import contextlib
import glob
import importlib.machinery
import importlib.util
import logging
import os
import sys

logger = logging.getLogger("dino.ops")

EXT_NAME = "MultiScaleDeformableAttention"
ENV_VAR = "DINO_MSDA_BACKEND"
_VALID_MODES = ("auto", "pytorch", "compiled", "gather")
_HERE = os.path.dirname(os.path.abspath(__file__))

_state = {"loaded": False, "ext": None, "error": None, "origin": None, "export_keeps_operator": False}
_announced = set()


def _load_inplace_build():
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in sorted(glob.glob(os.path.join(_HERE, EXT_NAME + suffix))):
            spec = importlib.util.spec_from_file_location(EXT_NAME, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[EXT_NAME] = module
            return module
    return None


def _version_tuple(version: str):
    """(major, minor) of a version string like '2.14.1+cu130'."""
    parts = version.split("+")[0].split(".")
    return tuple(int(p) for p in parts[:2] if p.isdigit())


def _check_loaded(ext):
    """Why a loaded module is not a usable extension (None if it is)."""
    import torch

    from . import _library

    origin = getattr(ext, "__file__", ext)
    if not hasattr(ext, "torch_version"):
        return (f"{origin} is an older build of the extension without the torch.ops.dino operators "
                "(rebuild it)")
    built, running = ext.torch_version(), torch.__version__
    if _version_tuple(built) != _version_tuple(running):
        return f"{origin} was built against torch {built}, this is torch {running} (rebuild it)"
    if not _library.has_kernel("cpu"):
        return f"{origin} did not register torch.ops.dino.ms_deform_attn"
    return None


def get_extension():
    """Return the compiled extension module, or ``None`` if it cannot be loaded.

    Once it has loaded, ``torch.ops.dino.ms_deform_attn`` and
    ``torch.ops.dino.ms_deform_attn_backward`` are registered with their fake kernels
    and autograd formula."""
    if not _state["loaded"]:
        _state["loaded"] = True
        import torch  # noqa: F401  (the extension needs libtorch loaded first)

        ext, errors = None, []
        try:
            ext = _load_inplace_build()
            if ext is None:
                errors.append(f"no in-place build in {_HERE}")
        except ImportError as exc:  # e.g. built against another torch (undefined symbols)
            errors.append(f"in-place build: {exc}")
        if ext is None:
            try:
                import MultiScaleDeformableAttention as ext  # type: ignore
            except ImportError as exc:  # not installed, or an ABI mismatch
                errors.append(f"import {EXT_NAME}: {exc}")
        if ext is not None:
            problem = _check_loaded(ext)
            if problem is None:
                from . import _library

                try:
                    _library.register()
                except RuntimeError as exc:  # e.g. another copy registered these operators differently
                    problem = f"registering the fake kernels and autograd of torch.ops.dino.ms_deform_attn: {exc}"
            if problem is not None:
                errors.append(problem)
                ext = None
        _state["ext"] = ext
        _state["error"] = "; ".join(errors) if ext is None else None
        _state["origin"] = getattr(ext, "__file__", None) if ext is not None else None
        if ext is None:
            logger.debug("MultiScaleDeformableAttention extension not used: %s", _state["error"])
    return _state["ext"]


def extension_error():
    """Why the extension could not be loaded (``None`` if it was)."""
    get_extension()
    return _state["error"]


def compiled_with_cuda():
    """True if the loaded extension registered a CUDA kernel of torch.ops.dino.ms_deform_attn
    with the dispatcher (built with CUDA); no GPU is needed to tell."""
    from . import _library

    return get_extension() is not None and _library.has_kernel("cuda")


def backend_mode():
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in _VALID_MODES:
        raise ValueError(f"{ENV_VAR}={mode!r}; expected one of {_VALID_MODES}")
    return mode


def is_exporting() -> bool:
    """True while torch.onnx.export / torch.export / torch.jit.trace runs the model."""
    import torch

    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.jit.is_tracing())


@contextlib.contextmanager
def operator_in_export():
    """While active, ``torch.export`` keeps ``torch.ops.dino.ms_deform_attn`` in the graph (the
    ONNX exporter and jit traces still take the gather path). Raises RuntimeError when the
    extension is not available."""
    if get_extension() is None:
        raise RuntimeError(f"the compiled {EXT_NAME} operator is not available ({_state['error']}); build it "
                           "(`pip install ./models/dino/ops`) or export without it")
    _state["export_keeps_operator"] = True
    try:
        yield
    finally:
        _state["export_keeps_operator"] = False


def extension_origin():
    """The file the extension was loaded from (None when it is not loaded)."""
    get_extension()
    return _state["origin"]


def _export_keeps_operator() -> bool:
    import torch

    return _state["export_keeps_operator"] and bool(torch.compiler.is_exporting()) \
        and not torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()


def backend(device="cpu"):
    """Execution path MSDeformAttn takes for tensors on ``device``.

    Returns ``"compiled-cpu"``, ``"compiled-cuda"``, ``"pytorch"`` or
    ``"gather"`` (always while exporting, see :func:`is_exporting`).
    Raises ``RuntimeError`` if ``DINO_MSDA_BACKEND=compiled`` but the compiled
    op does not support ``device``.
    """
    import torch

    dev_type = torch.device(device).type
    if is_exporting():
        # the gather path (plain ops), or the operator for an AOTInductor package (operator_in_export)
        return f"compiled-{dev_type}" if _export_keeps_operator() else "gather"
    mode = backend_mode()
    if mode in ("pytorch", "gather"):
        return mode
    ext = get_extension()
    if dev_type == "cpu" and ext is not None:
        return "compiled-cpu"
    if dev_type == "cuda" and ext is not None and compiled_with_cuda():
        return "compiled-cuda"
    if mode == "compiled":
        if ext is None:
            why = f"the extension is not available ({_state['error']})"
        else:
            why = f"the extension does not support {dev_type} tensors"
        raise RuntimeError(
            f"{ENV_VAR}=compiled but {why}. Build it with "
            "`pip install ./models/dino/ops` or "
            "`cd models/dino/ops && python setup.py build_ext --inplace`.")
    return "pytorch"


def announce(device_type, path):
    """Log once per (device type, path) which implementation is used."""
    key = (device_type, path)
    if key in _announced or is_exporting():
        return
    _announced.add(key)
    if path == "gather":
        logger.info("MSDeformAttn on %s: using the gather-based PyTorch path (forced by %s=gather)", device_type, ENV_VAR)
    elif path == "pytorch":
        reason = (f"forced by {ENV_VAR}=pytorch" if backend_mode() == "pytorch"
                  else (f"compiled extension unavailable: {_state['error']}" if _state["ext"] is None
                        else f"compiled extension has no {device_type} kernel"))
        logger.info("MSDeformAttn on %s: using the PyTorch (grid_sample) path (%s)", device_type, reason)
    else:
        logger.info("MSDeformAttn on %s: using the compiled %s op (%s)", device_type, EXT_NAME, _state["origin"])
