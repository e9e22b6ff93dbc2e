#!/bin/sh
# tests/gpu/emu/run_trainer.sh TRAINER [ARGS...] - run a trainer's CUDA executor without a GPU:
# its own generated unit (cuda/source.cu, matched to its sm_90 CUBIN) compiled for the CPU with
# the emulation of run.sh (prelude.hpp, epilogue.hpp), a fake libcuda.so.1 (fakecuda.c) and a
# fake cuBLASLt (fakecublaslt.c: fp32-accumulated bf16 products) and, for --nproc-per-node runs,
# a fake NCCL between the rank processes (fakenccl.c; LLFC_NCCL overrides it). It checks the executor's
# logic end to end (launch order and arguments, memory layout, products, the chunked loss,
# AdamW on the device, host copies) against the CPU executor; not speed. Slow (each CUDA thread
# is a host thread): use tiny models. Needs NVRTC, gcc and g++ (C++20); BUILD (default build)
# must hold libcuda.a, libkernels.a, libllfc.a (ninja).
set -eu
trainer=$1
shift
b=${BUILD:-build}
here=$(dirname "$0")
dir=$(mktemp -d /tmp/llfc_emu_XXXXXX)
trap 'rm -rf "$dir"' EXIT
gcc -std=c11 -D_GNU_SOURCE -O1 -I runtime -I compiler -I "$here" "$here/units.c" "$b/libcuda.a" \
    "$b/libkernels.a" "$b/libllfc.a" -fopenmp -lm -ldl -lpthread -o "$dir/units"
"$dir/units" "$dir" "$trainer" > /dev/null
for f in "$dir"/u*.cpp; do
    g++ -std=c++20 -O1 -ffp-contract=off -fPIC -shared -w ${EMU_CXXFLAGS:-} -I "$here" "$f" -o "${f%.cpp}.so" -pthread
done
gcc -std=c11 -O1 -fPIC -shared -I "$here" "$here/fakecuda.c" -o "$dir/libcuda.so.1" -ldl
gcc -std=c11 -O2 -fPIC -shared "$here/fakecublaslt.c" -o "$dir/libcublasLt.so"
gcc -std=c11 -O1 -fPIC -shared "$here/fakenccl.c" -o "$dir/libnccl.so.2" -lpthread -ldl
LLFC_EMU_DIR="$dir" LLFC_CUDA_DRIVER="$dir/libcuda.so.1" LLFC_CUBLASLT="$dir/libcublasLt.so" \
    LLFC_NCCL="${LLFC_NCCL:-$dir/libnccl.so.2}" "$trainer" "$@"
