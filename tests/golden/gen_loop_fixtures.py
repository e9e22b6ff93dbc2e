#!/usr/bin/env python3
"""gen_loop_fixtures.py - the losses of whole training runs in PyTorch, for the trainer to match.

Ten optimizer steps of Hugging Face Trainer semantics, written out by hand so every rule is
visible: micro-batches of 2 rows, gradient accumulation 2 with the loss summed over the window's
tokens and divided by their count (transformers' num_items_in_batch), clipping to max_grad_norm
1.0, AdamW (weight decay 0.01, not on norms and biases), a cosine schedule with 2 warmup steps,
rows in file order (disable_shuffling). Two runs on the same data:

  full  every parameter of a small random Llama written by `llfc init-model` (seeded, so the
        C test regenerates the same bytes instead of committing them);
  lora  a PEFT adapter (r 4, alpha 8, every linear layer but lm_head) made by PEFT with
        init_lora_weights=False, so B is not zero; it is committed as the adapter the trainer
        starts from (adapter_name_or_path): "an adapter made by PEFT trains on from the same
        values".

The rows are what `llfc preview --json` gives for recipes/demo_lora_sft.yaml with the
stories260K tokenizer (tests/unit/test_encode.c holds llfc's encoding to LLaMA-Factory's own).
Output: tests/fixtures/loop/expected.json, lora_start/ (the adapter both begin from) and
lora_end/ (PEFT's adapter after the 10 steps, which the adapter llfc writes must equal). tests/e2e/test_e2e.c runs the
trainer with the same settings and compares every logged loss and grad_norm (rel. err < 1e-4).

Usage (repository root; needs `pip install torch transformers peft safetensors`):
    python3 tests/golden/gen_loop_fixtures.py [--llfc build/llfc] [--shared ../shared]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "loop")

INIT = ["--family", "llama", "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
        "--intermediate", "128", "--vocab", "512", "--seed", "3", "--dtype", "f32"]
SETTINGS = {  # recipe overrides, the same for llfc
    "cutoff_len": 64, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
    "learning_rate": 2e-3, "lr_scheduler_type": "cosine", "warmup_steps": 2, "warmup_ratio": 0.0, "max_steps": 10,
    "weight_decay": 0.01, "max_grad_norm": 1.0, "disable_shuffling": True, "logging_steps": 1,
    "lora_rank": 4, "lora_alpha": 8,
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def overrides(extra=()):
    return [f"{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in SETTINGS.items()] + list(extra)


def rows_from_llfc(llfc, model_dir):
    out = subprocess.run([llfc, "preview", "recipes/demo_lora_sft.yaml", "-n", "1000", "--json",
                          f"model_name_or_path={model_dir}", "dataset_dir=data"] + overrides(),
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def batch_tensors(rows, pad_id):
    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["input_ids"])
        ids[i, :k] = torch.tensor(r["input_ids"])
        labels[i, :k] = torch.tensor(r["labels"])
        mask[i, :k] = 1
    return ids, labels, mask


def no_decay(name):  # transformers' get_decay_parameter_names for these models
    return "bias" in name or "norm" in name


def train(model, rows, pad_id):
    from transformers import get_cosine_schedule_with_warmup
    s = SETTINGS
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not no_decay(n)], "weight_decay": s["weight_decay"]},
              {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=s["learning_rate"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, s["warmup_steps"], s["max_steps"])
    B, A = s["per_device_train_batch_size"], s["gradient_accumulation_steps"]
    micro = [rows[i:i + B] for i in range(0, len(rows), B)]
    losses, norms, lrs, step, k = [], [], [], 0, 0
    while step < s["max_steps"]:
        window = [micro[(k + j) % len(micro)] for j in range(A)]
        k += A
        batches = [batch_tensors(w, pad_id) for w in window]
        count = sum(int((lab[:, 1:] != -100).sum()) for _, lab, _ in batches)
        opt.zero_grad()
        step_loss = 0.0
        for ids, lab, mask in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     lab[:, 1:].reshape(-1), ignore_index=-100,
                                                     reduction="sum") / count
            loss.backward()
            step_loss += loss.item()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], s["max_grad_norm"])
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        step += 1
        losses.append(step_loss)
        norms.append(float(norm))
    return losses, norms, lrs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llfc", default=os.path.join(ROOT, "build", "llfc"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM
    import peft
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp()
    model_dir = os.path.join(tmp, "model")
    subprocess.run([a.llfc, "init-model"] + INIT + ["--tokenizer", os.path.join(a.shared, "models/stories260K/hf"),
                    "-o", model_dir], check=True)
    rows = rows_from_llfc(a.llfc, model_dir)
    pad_id = 0
    result = {"init_model": INIT, "settings": SETTINGS, "rows": len(rows),
              "torch": torch.__version__, "peft": peft.__version__}

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    result["full"] = dict(zip(("loss", "grad_norm", "lr"), train(model, rows, pad_id)))

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    cfg = peft.LoraConfig(r=SETTINGS["lora_rank"], lora_alpha=SETTINGS["lora_alpha"], lora_dropout=0.0,
                          target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, cfg)
    start = os.path.join(OUT, "lora_start")
    shutil.rmtree(start, ignore_errors=True)
    model.save_pretrained(start)
    os.remove(os.path.join(start, "README.md"))  # PEFT's model card: not needed here
    result["lora"] = dict(zip(("loss", "grad_norm", "lr"), train(model, rows, pad_id)))
    end = os.path.join(OUT, "lora_end")  # the adapter after the 10 steps: llfc's must equal it
    shutil.rmtree(end, ignore_errors=True)
    model.save_pretrained(end)
    os.remove(os.path.join(end, "README.md"))

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(result, f, indent=1)
    for kind in ("full", "lora"):
        print(kind, " ".join(f"{x:.4f}" for x in result[kind]["loss"]))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
