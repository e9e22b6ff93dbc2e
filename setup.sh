#!/bin/sh
# setup.sh - install or check what building llfc needs on a fresh Debian/Ubuntu machine:
# the C toolchain, ninja, libyaml, Lua 5.4, cmocka, PCRE2 (static libraries are linked into
# llfc and every trainer), Open MPI's mpirun and library (openmpi-bin brings libopenmpi3's
# libmpi.so.40: the tests start ranks under mpirun; trainers dlopen it, never link it), MPICH's
# mpiexec and library (mpich: mpiexec.mpich and libmpich.so.12, the other MPI ABI, tested the
# same way; Open MPI's mpirun stays the default one), and the CUDA toolkit (NVRTC compiles
# generated kernels).
# Safe to run again: it installs only what is missing.
set -eu
packages="build-essential ninja-build libyaml-dev liblua5.4-dev libcmocka-dev libpcre2-dev libpng-dev zlib1g-dev openmpi-bin mpich"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
for lib in libyaml.a liblua5.4.a libpcre2-8.a libpng16.a libz.a; do
    [ -f "/usr/lib/x86_64-linux-gnu/$lib" ] || { echo "setup: /usr/lib/x86_64-linux-gnu/$lib is missing" >&2; exit 1; }
done
mpirun --version 2>/dev/null | grep -q "Open MPI" || { echo "setup: mpirun is not Open MPI's (see update-alternatives --display mpirun)" >&2; exit 1; }
cuda="${CUDA_HOME:-/usr/local/cuda}"
if [ -f "$cuda/include/nvrtc.h" ]; then
    echo "setup: CUDA toolkit at $cuda ($("$cuda/bin/nvcc" --version | tail -1))"
else
    echo "setup: no CUDA toolkit at $cuda (set CUDA_HOME); the CPU path builds without it" >&2
fi
echo "setup: ok"
