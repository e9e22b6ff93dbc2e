#!/bin/sh
# bench_train.sh - llfc's trainers against transformers + PEFT on one GPU: random-weight models
# shaped like Qwen2.5-0.5B, Qwen3-4B and Llama-3-8B (cutoff_len 2048, packed pt rows, bf16),
# LoRA (rank 16, every linear layer) and full fine-tuning; tokens/s, MFU against a bf16
# matrix-product peak measured in the same run, peak device memory, the ratios and the
# issue's targets (issue 7, item 4). The how and why: tests/bench/bench_train.py's header.
#
# Two commands. Here (no GPU; builds llfc, compiles the trainers for sm_90, ~1 minute):
#
#     tests/bench/bench_train.sh --stage                  # -> build/bench/ and build/bench.tgz
#
# then on the GPU machine, through the device tool's `run`:
#
#     command: tests/bench/bench_train.sh --run build/bench.tgz
#     carry:   ["build/bench.tgz"]        timeout_s: 600
#
# which makes the weights there (llfc init-model), runs both sides alone on the GPU, prints the
# table and sends results.json, table.txt and logs.tgz back through $OUT. A run starts nothing
# after 540 s (--deadline), so the table always comes back within the tool's 10 minutes; rows
# it did not reach say "not run": run those with --only SHAPE, then merge the tables here:
#
#     tests/bench/bench_train.sh --table results-1.json results-2.json
#
# --smoke stages tiny shapes of the same families and runs the whole pipeline here on the CPU
# (llfc's CPU executor, torch on the CPU): a test of the harness, not a benchmark. It needs
# torch, transformers and peft here (pip install torch transformers peft); CI does not run it.
#
# Options after the mode go to bench_train.py: stage [--shapes a,b] [--gradient-checkpointing]
# [--steps N]; run [--only a,b] [--methods lora,full] [--steps N] [--warmup W] [--timeout S]
# [--deadline S]. `bench_train.py -h` lists them all.
set -e
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
py=tests/bench/bench_train.py

case "$1" in
--stage)
    shift
    ninja build/llfc >/dev/null
    exec python3 $py stage build/bench "$@" ;;
--run)
    [ -n "$2" ] || { echo "usage: $0 --run build/bench.tgz|build/bench [options]" >&2; exit 2; }
    shift
    exec python3 $py run "$@" ;;
--smoke)
    shift
    ninja build/llfc >/dev/null
    python3 $py stage build/bench-smoke --smoke --arch none
    exec python3 $py run build/bench-smoke "$@" ;;
--table)
    shift
    exec python3 $py table "$@" ;;
*)
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
