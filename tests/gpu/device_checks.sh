#!/bin/sh
# device_checks.sh - issue 6's checks on a real GPU (its item 7), packed for one call of the
# device tool, built here where there is no GPU and copied over:
#
#     tests/gpu/device_checks.sh --stage            # here: -> build/device.tgz (about 4 MiB)
#
# then on the GPU machine, through the device tool's `run`:
#
#     command: tests/gpu/device_checks.sh --run build/device.tgz
#     carry:   ["build/device.tgz"]        timeout_s: 560
#
# --run unpacks build/llfc, test_kernels_gpu, test_cuda_emu, the cmocka and libgomp they link
# and the stories260K model (../shared does not travel), finds cuBLASLt and NCCL in the
# machine's Python packages (nvidia-cublas, nvidia-nccl) unless the system or LLFC_CUBLASLT /
# LLFC_NCCL has them, and runs, each under its own time limit:
#   1. test_kernels_gpu: every generated kernel against its C reference on fresh random inputs
#      (bf16 bounds, every output element written);
#   2. test_cuda_emu with LLFC_CUDA_REAL=1 LLFC_CUDA_STEPS=$STEPS (default 50): whole runs, LoRA
#      and full, fp16, freeze, Qwen2, Qwen3 and Gemma2 shapes, on the GPU against the CPU
#      executor's curve within bf16 tolerance; the trainers are compiled there by the llfc built
#      here; and one GPU's gradients through the data-parallel NCCL path (LLFC_NCCL_ONE_RANK=1,
#      issue 8's single-GPU check of the NCCL code) equal to the run without it. One GPU: the
#      tests of several ranks are left out (LLFC_TEST_SKIP).
# Logs come back through $OUT: gpu.txt, kernels.log, curves.log, summary.txt.
set -u
cd "$(dirname "$0")/../.."

stage() {
    set -e
    ninja build/llfc build/gpu-tests build/tests/test_cuda_emu >/dev/null
    shared=${LLFC_SHARED:-../shared}
    [ -d "$shared/models/stories260K/hf" ] || { echo "device_checks: $shared/models/stories260K/hf is missing (LLFC_SHARED)" >&2; exit 1; }
    rm -rf build/device && mkdir -p build/device/tests build/device/lib build/device/shared/models
    cp build/llfc build/device/
    cp build/tests/test_kernels_gpu build/tests/test_cuda_emu build/device/tests/
    for lib in libcmocka.so.0 libgomp.so.1; do
        cp -L "$(ldd build/tests/test_cuda_emu | awk -v l="$lib" '$1 == l { print $3 }')" build/device/lib/
    done
    cp -r "$shared/models/stories260K" build/device/shared/models/
    tar czf build/device.tgz -C build device
    echo "device_checks: staged build/device.tgz ($(du -k build/device.tgz | cut -f1) KiB); on the GPU machine:"
    echo "    tests/gpu/device_checks.sh --run build/device.tgz    (carry build/device.tgz, timeout_s 560)"
}

# The newest lib$1.so.* in the Python packages' nvidia/*/lib folders, or nothing.
python_lib() {
    python3 -c "import glob, site, sys
for d in site.getsitepackages() + sys.path:
    for p in sorted(glob.glob(d + '/nvidia/*/lib/lib$1.so.*')): print(p)" 2>/dev/null | tail -1
}

run() {
    tar xzf "$1" -C build || exit 1
    mkdir -p build/tests
    cp build/device/llfc build/llfc && cp build/device/tests/* build/tests/ || exit 1
    out=${OUT:-build/device/out}
    mkdir -p "$out"
    # the carried cmocka and libgomp, then the Python packages' NVIDIA libraries (what cuBLASLt or
    # NCCL from there may load beside them)
    nvidia=$(python3 -c "import glob, site, sys
print(':'.join(sorted({p for d in site.getsitepackages() + sys.path for p in glob.glob(d + '/nvidia/*/lib')})))" 2>/dev/null)
    export LD_LIBRARY_PATH="$PWD/build/device/lib${nvidia:+:$nvidia}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    ldconfig -p 2>/dev/null | grep -q libcublasLt.so || [ -n "${LLFC_CUBLASLT:-}" ] || export LLFC_CUBLASLT="$(python_lib cublasLt)"
    ldconfig -p 2>/dev/null | grep -q libnccl.so || [ -n "${LLFC_NCCL:-}" ] || export LLFC_NCCL="$(python_lib nccl)"
    { nvidia-smi -L; nvidia-smi --query-gpu=driver_version,memory.total --format=csv;
      echo "LLFC_CUBLASLT=${LLFC_CUBLASLT:-} LLFC_NCCL=${LLFC_NCCL:-}"; } > "$out/gpu.txt" 2>&1
    cat "$out/gpu.txt"
    timeout 180 build/tests/test_kernels_gpu > "$out/kernels.log" 2>&1
    kernels=$?
    tail -5 "$out/kernels.log"
    # one GPU: every test but those of several ranks (test_*_ranks_*: two processes on one GPU)
    LLFC_SHARED=build/device/shared LLFC_CUDA_REAL=1 LLFC_CUDA_STEPS=${STEPS:-50} LLFC_TEST_SKIP='*ranks*' \
        timeout 330 build/tests/test_cuda_emu > "$out/curves.log" 2>&1
    curves=$?
    grep -E 'worst relative gap|OK|FAILED|SKIPPED' "$out/curves.log"
    # a test skipped here (no GPU, no driver) is a check not made: it fails the run
    skipped=$(grep -c '^\[  SKIPPED \]' "$out/kernels.log")
    { echo "test_kernels_gpu: exit $kernels, $skipped skipped"; grep -E '^\[  (PASSED|FAILED) \]' "$out/kernels.log";
      echo "test_cuda_emu (LLFC_CUDA_REAL=1, ${STEPS:-50} steps): exit $curves"; grep -E 'worst relative gap' "$out/curves.log";
      grep -E '^\[  (PASSED|FAILED) \]' "$out/curves.log"; } > "$out/summary.txt"
    cat "$out/summary.txt"
    [ $kernels -eq 0 ] && [ "$skipped" -eq 0 ] && [ $curves -eq 0 ]
}

case "${1:-}" in
--stage) stage ;;
--run)
    [ -n "${2:-}" ] || { echo "usage: $0 --run build/device.tgz" >&2; exit 2; }
    run "$2" ;;
*)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
