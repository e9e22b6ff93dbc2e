#!/bin/sh
# demo.sh - the main job on the built-in demo: compile the demo recipe into a trainer and run
# it. Until training lands, the trainer's job is the dry run: it checks the model, data and
# scripts and prints what a run would do.
set -eu
build/llfc recipes/demo_lora_sft.yaml -o build/run_demo
build/run_demo --dry-run
