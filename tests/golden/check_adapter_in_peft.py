#!/usr/bin/env python3
"""check_adapter_in_peft.py - does PEFT, given the adapter llfc trained, compute what llfc computed?

Trains 10 LoRA steps with llfc (the settings of tests/fixtures/loop/expected.json, from the
PEFT-made adapter in tests/fixtures/loop/lora_start, val_size 0.25), then loads llfc's
adapter_model.safetensors + adapter_config.json with PEFT onto the same base model and evaluates
the eval split that `llfc preview --eval --json` gives: PEFT's eval loss must equal the
eval_loss llfc wrote to all_results.json, and PEFT's merged model must give the same logits as
the adapter model (merge_and_unload), so the adapter is a normal PEFT adapter.

Usage (repository root; needs `pip install torch transformers peft safetensors`):
    python3 tests/golden/check_adapter_in_peft.py [--llfc build/llfc] [--shared ../shared]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llfc", default=os.path.join(ROOT, "build", "llfc"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    import peft
    from transformers import AutoModelForCausalLM
    exp = json.load(open(os.path.join(ROOT, "tests/fixtures/loop/expected.json")))
    tmp = tempfile.mkdtemp()
    model = os.path.join(tmp, "model")
    subprocess.run([a.llfc, "init-model"] + exp["init_model"] + ["--tokenizer", os.path.join(a.shared, "models/stories260K/hf"),
                    "-o", model], check=True, capture_output=True)
    ov = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in exp["settings"].items()]
    ov += [f"model_name_or_path={model}", f"dataset_dir={ROOT}/data", "val_size=0.25",
           f"adapter_name_or_path={ROOT}/tests/fixtures/loop/lora_start"]
    trainer = os.path.join(tmp, "run_lora")
    subprocess.run([a.llfc, "recipes/demo_lora_sft.yaml", "-o", trainer] + ov, cwd=ROOT, check=True, capture_output=True)
    out = os.path.join(tmp, "out")
    subprocess.run([trainer, f"output_dir={out}"], cwd=tmp, check=True, capture_output=True)
    llfc_eval = json.load(open(os.path.join(out, "all_results.json")))["eval_loss"]
    rows = subprocess.run([a.llfc, "preview", "recipes/demo_lora_sft.yaml", "--eval", "--json", "-n", "1000"] + ov,
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(x) for x in rows.splitlines() if x.strip()]

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation="eager")
    m = peft.PeftModel.from_pretrained(base, out)
    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), n), dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["input_ids"])
        ids[i, :k], labels[i, :k], mask[i, :k] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100).item()
        merged = m.merge_and_unload()(input_ids=ids, attention_mask=mask).logits
    rel = abs(loss - llfc_eval) / abs(loss)
    merge_diff = float((merged - logits).abs().max() / logits.abs().max())
    print(f"peft {peft.__version__}: {len(rows)} eval rows; PEFT eval loss {loss:.8f}, llfc eval_loss {llfc_eval:.8f}, "
          f"relative difference {rel:.2e}; merged vs adapter logits {merge_diff:.2e}")
    ok = rel < 1e-5 and merge_diff < 1e-5
    print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
