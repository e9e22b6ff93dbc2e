#!/bin/sh
# demo.sh - the main job on the built-in demo: compile the demo recipe into a trainer and run
# it. It fine-tunes the pretrained 260K-parameter Llama of ../shared with LoRA on the demo
# stories (CPU executor), writing the adapter, logs and loss plot to build/demo_out.
set -eu
build/llfc recipes/demo_lora_sft.yaml -o build/run_demo
build/run_demo output_dir=build/demo_out overwrite_output_dir=true
echo "demo: outputs in build/demo_out (adapter_model.safetensors, trainer_log.jsonl, training_loss.png)"
