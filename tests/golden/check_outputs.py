#!/usr/bin/env python3
"""check_outputs.py - do PEFT and transformers load what llfc writes, tensor for tensor?

    LLFC_SHARED=../shared LLFC_OUTPUTS_KEEP=/tmp/llfc_out build/tests/test_outputs
    python3 tests/golden/check_outputs.py /tmp/llfc_out ../shared/models/stories260K/hf

test_outputs writes OUT/adapter (LoRA r=4 on q,v,o,down_proj + modules_to_save embed_tokens) and
OUT/model (a full stories260K-shaped model folder, sharded), every tensor filled with
pattern(idx, k) = ((7k + 13 idx) % 1000 - 500) / 1024 where idx is the tensor's position in the
order llfc lists them. This script loads both with the libraries (PeftModel.from_pretrained,
AutoModelForCausalLM.from_pretrained, AutoTokenizer) and checks every loaded weight against
the pattern, that nothing was missing or unexpected, and that a forward pass runs.
Needs: pip install torch transformers peft safetensors.
"""
import json
import os
import sys

import torch
from safetensors import safe_open


def pattern(idx, shape):
    n = 1
    for s in shape:
        n *= s
    k = torch.arange(n, dtype=torch.int64)
    return (((k * 7 + idx * 13) % 1000 - 500).to(torch.float32) / 1024.0).reshape(shape)


def main(out, base):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from peft import PeftModel

    failures = []

    # --- the full model folder
    model_dir = os.path.join(out, "model")
    hf_logging.set_verbosity_error()
    model, info = AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(k):
            failures.append(f"model: {k}: {info[k]}")
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        index = json.load(f)
    # the index lists tensors by name, not in llfc's order: recover each tensor's idx from its
    # first element, pattern(idx, 0) = (13 idx % 1000 - 500) / 1024, unique for idx < 1000
    sd = model.state_dict()
    checked = 0
    for name, shard in index["weight_map"].items():
        with safe_open(os.path.join(model_dir, shard), "pt") as f:
            t = f.get_tensor(name)
        idx = next(i for i in range(1000) if float(pattern(i, (1,))[0]) == float(t.reshape(-1)[0]))
        if not torch.equal(t, pattern(idx, tuple(t.shape))):
            failures.append(f"model: {name}: not the pattern written")
        if not torch.equal(sd[name], t):
            failures.append(f"model: {name}: transformers loaded other values")
        checked += 1
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("Once upon a time", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    print(f"model: {checked} tensors equal in transformers; tokenizer ok; logits {tuple(logits.shape)}")

    # --- the adapter
    ad = os.path.join(out, "adapter")
    base_model = AutoModelForCausalLM.from_pretrained(base)
    base_sd = {k: v.clone() for k, v in base_model.state_dict().items()}
    pm = PeftModel.from_pretrained(base_model, ad)
    psd = pm.state_dict()
    with safe_open(os.path.join(ad, "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        # llfc order: per layer, per target in model order, A then B; then modules_to_save
        order = sorted([n for n in names if ".lora_" in n],
                       key=lambda n: (int(n.split(".layers.")[1].split(".")[0]),
                                      ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj"].index(n.split(".")[-3]),
                                      n.split(".")[-2]))
        order += [n for n in names if ".lora_" not in n]
        for idx, n in enumerate(order):
            t = f.get_tensor(n)
            if not torch.equal(t, pattern(idx, tuple(t.shape))):
                failures.append(f"adapter: {n}: not the pattern written")
            if ".lora_" in n:
                loaded = psd[n.replace(".weight", ".default.weight")]
            else:  # modules_to_save: the trained copy
                mod = n[len("base_model.model."):].rsplit(".", 1)[0]
                loaded = psd[f"base_model.model.{mod}.modules_to_save.default.weight"]
            if not torch.equal(loaded, t):
                failures.append(f"adapter: {n}: PEFT loaded other values")
    cfg = pm.peft_config["default"]
    if cfg.r != 4 or cfg.lora_alpha != 16 or set(cfg.target_modules) != {"q_proj", "v_proj", "o_proj", "down_proj"}:
        failures.append(f"adapter: config read back as {cfg}")
    # merged weight = W + (alpha / r) B A: check one against the formula
    merged = pm.merge_and_unload().state_dict()
    with safe_open(os.path.join(ad, "adapter_model.safetensors"), "pt") as f:
        A = f.get_tensor("base_model.model.model.layers.2.self_attn.o_proj.lora_A.weight")
        B = f.get_tensor("base_model.model.model.layers.2.self_attn.o_proj.lora_B.weight")
    W = base_sd["model.layers.2.self_attn.o_proj.weight"]
    if not torch.allclose(merged["model.layers.2.self_attn.o_proj.weight"], W + 4.0 * (B @ A), atol=1e-5):
        failures.append("adapter: merged o_proj != W + alpha/r * B A")
    print(f"adapter: {len(order)} tensors equal in PEFT {__import__('peft').__version__}; merge ok")

    for f_ in failures:
        print("FAIL", f_)
    print("OK" if not failures else f"{len(failures)} FAILURES")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
