#!/usr/bin/env bash
# GPU checks, on a machine with an NVIDIA GPU (one is enough); one summary line per check,
# exit status 1 if any check fails, 2 if there is no GPU to check on.
#   1. build the deformable-attention op with its CUDA kernels (in place, as build_ext --inplace)
#   2. its CUDA tests: CUDA kernel vs the CPU kernel and the PyTorch path, gradcheck, input checks,
#      torch.library.opcheck of torch.ops.dino.ms_deform_attn(_backward) on CUDA tensors
#   3. torch.compile (inductor) of a tiny DINO on CUDA equals eager at two image sizes, one compile
#   4. DINO-R50-4scale training steps (forward, loss, backward, fused AdamW) with float16 AMP
#      (GradScaler) and with bfloat16 autocast: the loss must stay finite
#   5. the tiny training pipeline (1 epoch + COCO eval) under a 1-GPU torchrun (NCCL)
#   6. benchmarks: the op (CUDA kernel vs PyTorch path) and the whole model (both paths)
#
#   bash scripts/check_gpu.sh                  # logs in check_gpu_logs/ (or CHECK_GPU_LOGS=dir)
#   PY=python TORCH_CUDA_ARCH_LIST="9.0" bash scripts/check_gpu.sh
#   bash scripts/check_gpu.sh --dry-run        # here, without a GPU: every step up to its first CUDA call
# Needs a Python with a CUDA build of torch (.venv of scripts/setup_env.sh, else python3) and the
# CUDA toolkit (nvcc) matching its major version. Packages that Python lacks travel as wheels in .whl/
# (scripts/gpu_wheels.sh downloads them where PyPI is reachable); they are installed into /tmp/site
# first. Takes ~5-10 min on one modern GPU.
#
# --dry-run runs the same steps on the CPU so that a lent GPU's minutes are never spent on set-up
# errors: the wheels are checked against CPython 3.12 / manylinux x86_64 (the lent machine's), the op
# is built with its CUDA kernels (nvcc compiles them without a GPU), every CUDA test is collected, and
# each other step runs with the CPU in place of the GPU (gloo for NCCL, aot_eager for inductor, few
# and small iterations).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ "$PY" == */* && -d "$(dirname "$PY")" ]]; then PY="$(cd "$(dirname "$PY")" 2>/dev/null && pwd)/$(basename "$PY")"; fi
LOGS="${CHECK_GPU_LOGS:-check_gpu_logs}"
R50=config/DINO/DINO_4scale.py
TINY=(backbone=resnet18 "return_interm_indices=[0,1]" hidden_dim=32 dim_feedforward=64 enc_layers=1
      dec_layers=2 num_queries=20 dn_number=3 nheads=2 enc_n_points=2 dec_n_points=2 num_classes=4
      dn_labelbook_size=4 batch_size=2 "data_aug_scales=[64]" data_aug_max_size=96
      "data_aug_scales2_resize=[64]" "data_aug_scales2_crop=[48,64]" backbone_pretrained=False)

if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
    echo "check_gpu: no Python at $PY: run scripts/setup_env.sh first or set PY=..." >&2
    exit 2
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    if [ "$DRY_RUN" = 1 ]; then  # the wheels must install on the lent machine's Python, not this one's
        plat=(); for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
            plat+=(--platform "$p"); done
        "$PY" -m pip install -q --dry-run --ignore-installed --no-index --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation cp "${plat[@]}" --target /tmp/check_gpu_site .whl/*.whl ||
            { echo "check_gpu: the wheels in .whl/ do not install on CPython 3.12 / manylinux x86_64" >&2; exit 2; }
        echo "check_gpu: dry run: $(ls .whl/*.whl | wc -l) wheels in .whl/ fit CPython 3.12 / manylinux x86_64"
    else
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || { echo "check_gpu: installing .whl/*.whl failed" >&2; exit 2; }
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
elif [ "$DRY_RUN" = 1 ]; then
    echo "check_gpu: dry run: no .whl/ folder (scripts/gpu_wheels.sh makes it); the lent machine lacks pycocotools, addict, termcolor ..." >&2
    exit 2
fi
missing=$("$PY" -c 'import importlib.util as u
print(" ".join(m for m in ("pycocotools", "addict", "termcolor", "scipy", "timm") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
    echo "check_gpu: $PY lacks $missing: bash scripts/gpu_wheels.sh where PyPI is reachable, carry .whl/" >&2
    exit 2
fi
gpu=$("$PY" -c 'import torch
if torch.version.cuda is None:
    print("NONE torch " + torch.__version__ + " is a CPU-only build")
elif not torch.cuda.is_available():
    print("NONE torch.cuda.is_available() is False (torch " + torch.__version__ + ", CUDA " + torch.version.cuda + ")")
else:
    print("OK " + torch.cuda.get_device_name(0) + ", torch " + torch.__version__ + ", CUDA " + torch.version.cuda)' 2>&1)
DEV=cuda COMPILE_BACKEND=inductor DIST=nccl ITERS=3 REPEATS=20 BIG="800 1216"
if [ "$DRY_RUN" = 1 ]; then
    DEV=cpu COMPILE_BACKEND=aot_eager DIST=gloo ITERS=1 REPEATS=2 BIG="256 320"
    gpu="OK dry run on the CPU (${gpu#* })"
fi
if [ "${gpu%% *}" != "OK" ]; then
    echo "check_gpu: no CUDA GPU on this machine (${gpu#NONE }): nothing was checked." >&2
    echo "check_gpu: run scripts/check_gpu.sh on a machine with an NVIDIA GPU and its driver." >&2
    exit 2
fi
mkdir -p "$LOGS"
echo "check_gpu: ${gpu#OK }; logs in $LOGS/"

failures=0
summary=()
# check NAME LOGFILE COMMAND...: runs COMMAND, records PASS/FAIL and the log's last line
check() {
    local name=$1 log="$LOGS/$2"
    shift 2
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        summary+=("PASS  $name ($((SECONDS - t0)) s): $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-150)")
    else
        failures=$((failures + 1))
        summary+=("FAIL  $name ($((SECONDS - t0)) s): see $log: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-150)")
    fi
    echo "${summary[-1]}"
}

build_op() {
    (cd models/dino/ops && FORCE_CUDA=1 "$PY" setup.py build_ext --inplace) &&
        "$PY" -c 'from models.dino import ops
assert ops.compiled_with_cuda(), "the built extension has no CUDA kernels"
print("backend(cpu) =", ops.backend("cpu"), "; CUDA kernels compiled in")'
}

cuda_tests() {
    # -rs lists skips: a skip here means a CUDA test did not run, which counts as a failure.
    # The tests that feed the op bad input run in a pytest of their own: a crash there (the H200
    # of 2026-12-04 died with SIGSEGV when the op raised) must not hide the other CUDA tests.
    local out="$LOGS/cuda_tests.pytest.txt" raising="$LOGS/cuda_raising.pytest.txt" rc rc2 collect=()
    local files=(tests/test_ms_deform_attn.py tests/test_ms_deform_attn_cuda.py tests/test_ms_deform_attn_opcheck.py)
    [ "$DRY_RUN" = 1 ] && collect=(--collect-only)  # no GPU: the tests are found and imported, not run
    "$PY" -m pytest -q -rs -p no:cacheprovider "${collect[@]}" "${files[@]}" -k "cuda and not raise" >"$out" 2>&1
    rc=$?
    "$PY" -m pytest -q -rs -p no:cacheprovider "${collect[@]}" "${files[@]}" -k "cuda and raise" >"$raising" 2>&1
    rc2=$?
    cat "$out" "$raising"
    [ "$rc2" -ge 128 ] && echo "the bad-input tests killed Python (signal $((rc2 - 128))): the op's errors crash here"
    [ "$rc" -eq 0 ] && [ "$rc2" -eq 0 ] || return 1
    [ "$DRY_RUN" = 1 ] && { grep -q "tests collected" "$out" && grep -q "tests collected" "$raising" && return 0; return 1; }
    if grep -q " skipped" "$out" "$raising"; then echo "some CUDA tests were skipped (listed above)"; return 1; fi
    "$PY" models/dino/ops/test.py
}

compile_vs_eager() {
    # the CPU suite runs this test with aot_eager (inductor takes minutes on 2 cores); here inductor on CUDA
    local out="$LOGS/compile_vs_eager.pytest.txt" rc
    DINO_COMPILE_TEST_BACKEND=$COMPILE_BACKEND DINO_COMPILE_TEST_DEVICE=$DEV \
        "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_compile_model.py >"$out" 2>&1
    rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || return 1
    if grep -q " skipped" "$out"; then echo "the compile test was skipped (listed above)"; return 1; fi
}

train_steps() {  # $1: float16 | bfloat16
    # shellcheck disable=SC2086  # BIG is two numbers
    "$PY" tools/benchmark_model.py -c "$R50" --device "$DEV" --train --amp --amp_dtype "$1" --images 2 \
        --image_size $BIG --warmup 1 --iters "$ITERS" --skip_flops
}

torchrun_pipeline() {
    local work="$LOGS/tiny_pipeline"
    rm -rf "$work" && mkdir -p "$work"
    "$PY" tools/make_synthetic_coco.py --out "$work/coco" --num-train 8 --num-val 4 --min-size 64 \
        --max-size 96 --classes 3 --seed 0 &&
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 main.py -c "$R50" \
        --coco_path "$work/coco" --output_dir "$work/out" --device "$DEV" --num_workers 0 --amp \
        --options epochs=1 "${TINY[@]}" >"$work/torchrun.out" 2>&1
    local rc=$?
    cat "$work/torchrun.out"
    [ "$rc" -eq 0 ] && grep -q "distributed init (torchrun, $DIST)" "$work/torchrun.out" &&
    test -f "$work/out/checkpoint.pth" &&
    "$PY" main.py -c "$R50" --coco_path "$work/coco" --output_dir "$work/eval" --device "$DEV" --num_workers 0 \
        --eval --resume "$work/out/checkpoint.pth" --options "${TINY[@]}" &&
    echo "torchrun (1 process, $DIST, $DEV): 1 epoch, checkpoint and --eval of it done"
}

check "build op with CUDA" build.log build_op
check "CUDA op tests" cuda_tests.log cuda_tests
check "torch.compile ($COMPILE_BACKEND) vs eager, $DEV" compile.log compile_vs_eager
check "train R50 float16 AMP" train_fp16.log train_steps float16
check "train R50 bfloat16" train_bf16.log train_steps bfloat16
check "tiny pipeline, torchrun $DIST" torchrun.log torchrun_pipeline
check "benchmark op" bench_op.log "$PY" tools/benchmark_msda.py --device "$DEV" --warmup 1 --repeats "$REPEATS"
# shellcheck disable=SC2086
check "benchmark model" bench_model.log "$PY" tools/benchmark_model.py -c "$R50" --device "$DEV" \
    --image_size $BIG --warmup 1 --iters "$ITERS" --compare_pytorch_path --skip_flops

echo
echo "check_gpu summary (${gpu#OK }):"
printf '  %s\n' "${summary[@]}"
if [ "$failures" -gt 0 ]; then
    echo "check_gpu: $failures check(s) failed"
    exit 1
fi
echo "check_gpu: all checks passed"
