"""Build the ``MultiScaleDeformableAttention`` extension.

    cd models/dino/ops && python setup.py build install
    cd models/dino/ops && python setup.py build_ext --inplace
    pip install --no-build-isolation ./models/dino/ops        (or -e)

The CPU kernels (forward and backward) are always built. The CUDA kernels are
added when the CUDA toolkit is found (CUDA_HOME / nvcc), PyTorch is a CUDA
build, and either a GPU is visible or FORCE_CUDA=1. MSDA_CPU_ONLY=1 skips CUDA
even then. Without a visible GPU, TORCH_CUDA_ARCH_LIST defaults to the
architectures PyTorch itself was built for; set it (e.g. "8.0") for a faster
build. See docs/OPS.md.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import setup


def _locate_cuda_home():
    """If CUDA_HOME/CUDA_PATH are unset and the nvcc on PATH is not inside a
    toolkit (e.g. a wrapper script in /usr/local/bin), ask nvcc where its
    toolkit is, so that PyTorch finds the CUDA headers and libraries."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return
    guess = os.path.dirname(os.path.dirname(nvcc))
    if os.path.exists(os.path.join(guess, "include", "cuda_runtime.h")):
        return
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return
    match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
    if match:
        top = os.path.normpath(match.group(1).strip('"'))
        if os.path.exists(os.path.join(top, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = top
            print(f"[MultiScaleDeformableAttention] CUDA_HOME={top} (from nvcc)", flush=True)


_locate_cuda_home()

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

NAME = "MultiScaleDeformableAttention"

# every path below is relative to this directory, whatever the caller's cwd
_HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(_HERE)


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _want_cuda():
    """(build CUDA?, reason)"""
    if _env_flag("MSDA_CPU_ONLY"):
        return False, "MSDA_CPU_ONLY=1"
    if torch.version.cuda is None:
        return False, "PyTorch is not a CUDA build"
    if CUDA_HOME is None:
        return False, "CUDA toolkit not found (set CUDA_HOME)"
    if torch.cuda.is_available():
        return True, "GPU visible and CUDA toolkit at " + CUDA_HOME
    if _env_flag("FORCE_CUDA"):
        return True, "FORCE_CUDA=1 and CUDA toolkit at " + CUDA_HOME
    return False, "no GPU visible (set FORCE_CUDA=1 to build the CUDA kernels anyway)"


def _default_arch_list():
    """Architectures PyTorch was built for, in TORCH_CUDA_ARCH_LIST syntax."""
    archs = []
    for arch in torch.cuda.get_arch_list():
        if arch.startswith("sm_"):
            num = arch[3:].rstrip("af")
            archs.append(f"{num[:-1]}.{num[-1]}")
    archs = sorted(set(archs), key=lambda a: tuple(int(x) for x in a.split(".")))
    if archs:
        archs[-1] += "+PTX"
    return ";".join(archs)


def get_extensions():
    sources = sorted(glob.glob(os.path.join("src", "*.cpp")) + glob.glob(os.path.join("src", "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("src", "cuda", "*.cu")))

    cxx_flags = ["-O3"]
    link_flags = []
    if sys.platform != "win32" and torch.backends.openmp.is_available():
        # at::parallel_for is header-inlined OpenMP: without -fopenmp it runs on one thread
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")

    with_cuda, reason = _want_cuda()
    define_macros = []
    extra_compile_args = {"cxx": cxx_flags}
    extension = CppExtension
    if with_cuda:
        extension = CUDAExtension
        sources += cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3"]
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = _default_arch_list()

    banner = "CPU+CUDA" if with_cuda else "CPU only"
    print(f"[{NAME}] building {banner}: {reason}", flush=True)
    if with_cuda:
        print(f"[{NAME}] TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(visible GPUs)')}",
              flush=True)
    print(f"[{NAME}] sources: {', '.join(sources)}", flush=True)

    return [
        extension(
            NAME,
            sources,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=link_flags,
        )
    ]


setup(
    name=NAME,
    version="1.1.0",
    description="Multi-scale deformable attention op (CPU and CUDA) for DINO / Deformable DETR",
    python_requires=">=3.8",
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension},
    zip_safe=False,
)
