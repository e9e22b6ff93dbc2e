#!/bin/sh
# bench_tokenizer.sh - build the C driver and compare llfc's tokenizer with Hugging Face's in
# MB/s, single-threaded and on all cores (see bench_tokenizer.py; needs `pip install
# tokenizers`). Arguments go to bench_tokenizer.py, e.g. --mb 64 --tokenizers qwen3,gemma3.
set -e
cd "$(dirname "$0")/../.."
mkdir -p build
gcc -std=c11 -D_GNU_SOURCE -O2 -g -I runtime -o build/bench_tokenizer \
    tests/bench/bench_tokenizer.c runtime/tokenizer.c runtime/tok_*.c runtime/json.c \
    runtime/util.c /usr/lib/x86_64-linux-gnu/libpcre2-8.a -lm -lpthread
exec python3 tests/bench/bench_tokenizer.py --bin build/bench_tokenizer "$@"
