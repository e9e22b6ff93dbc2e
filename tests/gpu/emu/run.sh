#!/bin/sh
# tests/gpu/emu/run.sh [BUILD] - run tests/gpu/test_kernels_gpu without a GPU: the same
# generated CUDA units, compiled by NVRTC as usual (their CUBINs pick the unit), but executed
# on the CPU by a fake libcuda.so.1 (fakecuda.c) and a C++20 emulation of threads, barriers and
# warp shuffles (prelude.hpp). It checks the kernels' arithmetic, indexing, masking and that
# every output element is written; not speed, not true inter-block concurrency, not memory
# coalescing. Needs NVRTC, gcc and g++ (C++20). BUILD defaults to build (then build/libcuda.a,
# build/tests/test_kernels_gpu must exist: ninja build/gpu-tests). With an ASan build of the
# test (build/asan) and EMU_CXXFLAGS=-fsanitize=address, device memory is ASan's heap and the
# kernels themselves are instrumented: an out-of-bounds access by a kernel is reported.
set -eu
b=${1:-build}
here=$(dirname "$0")
dir=$(mktemp -d /tmp/llfc_emu_XXXXXX)
trap 'rm -rf "$dir"' EXIT
gcc -std=c11 -D_GNU_SOURCE -O1 -I runtime -I compiler -I "$here" "$here/units.c" "$b/libcuda.a" \
    "$b/libkernels.a" "$b/libllfc.a" -fopenmp -lm -ldl -lpthread -o "$dir/units"
XDG_CACHE_HOME="$dir/cache" "$dir/units" "$dir" > /dev/null
for f in "$dir"/u*.cpp; do
    g++ -std=c++20 -O1 -ffp-contract=off -fPIC -shared -w ${EMU_CXXFLAGS:-} -I "$here" "$f" -o "${f%.cpp}.so" -pthread &
done
wait
gcc -std=c11 -O1 -fPIC -shared -I "$here" "$here/fakecuda.c" -o "$dir/libcuda.so.1" -ldl
LLFC_EMU_DIR="$dir" LD_LIBRARY_PATH="$dir" XDG_CACHE_HOME="$dir/cache" "$b/tests/test_kernels_gpu"
