#!/usr/bin/env python3
"""gen_safetensors_probe.py - what Hugging Face's own code says, written down for the C tests.

Two fixture sets, both read by tests/unit (the C side never runs Python):

1. tests/fixtures/stories260k_probe.json: every tensor of ../shared/models/stories260K/hf as
   Python's `safetensors` reads it (dtype, shape, the first values, sum, sum of squares).
   test_safetensors.c checks llfc's mmap reader against it.
2. tests/fixtures/model/NAME.expected.json for each NAME.config.json beside it: what
   transformers builds from that config (head_dim, KV heads, per-layer sliding, RoPE parameters
   after its standardisation, activation, biases, norms, embedding scale, soft-caps, token ids,
   and the exact state_dict names and shapes with the parameter count). test_model.c checks
   model_load + model_tensors against it.

Run from the repository root after `pip install torch transformers safetensors numpy`:
    python3 tests/golden/gen_safetensors_probe.py [--shared ../shared]
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile


def probe_stories(shared, out_path):
    from safetensors import safe_open
    import numpy as np
    import torch

    path = os.path.join(shared, "models/stories260K/hf/model.safetensors")
    tensors = {}
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        for name in sorted(f.keys()):
            t = f.get_tensor(name)
            flat = t.to(torch.float64).flatten()
            tensors[name] = {
                "dtype": str(t.dtype).replace("torch.", ""),
                "shape": list(t.shape),
                "first": [float(x) for x in flat[:4]],
                "last": float(flat[-1]),
                "sum": float(flat.sum()),
                "sumsq": float((flat * flat).sum()),
            }
    doc = {"source": "safetensors " + __import__("safetensors").__version__ + " safe_open",
           "file": "models/stories260K/hf/model.safetensors", "metadata": metadata,
           "tensors": tensors}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {out_path}: {len(tensors)} tensors")


def activation_name(act):
    name = type(act).__name__
    if "SiLU" in name:
        return "silu"
    if "Tanh" in name or "NewGELU" in name or "FastGELU" in name:
        return "gelu_pytorch_tanh"
    if "GELU" in name:
        return "gelu"
    raise ValueError(f"unexpected activation {name}")


def rope_dict(params, max_positions):
    """transformers' standardised rope parameters, with its defaults made explicit."""
    if params is None:
        return None
    p = dict(params)
    t = p.get("rope_type", p.get("type", "default"))
    out = {"type": t, "theta": float(p["rope_theta"])}
    if t != "default":
        out["factor"] = float(p["factor"])
    if t in ("llama3", "yarn", "dynamic"):
        out["original_max_positions"] = int(p.get("original_max_position_embeddings") or max_positions)
    if t == "llama3":
        out["low_freq_factor"] = float(p["low_freq_factor"])
        out["high_freq_factor"] = float(p["high_freq_factor"])
    if t == "yarn":
        out["beta_fast"] = float(p.get("beta_fast") or 32)
        out["beta_slow"] = float(p.get("beta_slow") or 1)
        out["attention_factor"] = float(p.get("attention_factor") or 0)
        out["truncate"] = bool(p.get("truncate", True))
    return out


def expect_model(config_path, out_path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as d:
        shutil.copy(config_path, os.path.join(d, "config.json"))
        cfg = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    inner = model.model
    layer0 = inner.layers[0]
    attn = layer0.self_attn
    L = cfg.num_hidden_layers

    def sliding(layer):
        a = layer.self_attn
        if hasattr(a, "sliding_window"):
            return bool(a.sliding_window)
        return bool(getattr(cfg, "sliding_window", None))  # mistral: every layer

    layer_sliding = [sliding(l) for l in inner.layers]
    rp = cfg.rope_parameters
    nested = isinstance(rp, dict) and ("full_attention" in rp or "sliding_attention" in rp)
    rope = rope_dict(rp["full_attention"] if nested else rp, cfg.max_position_embeddings)
    rope_local = rope_dict(rp.get("sliding_attention") or rp["full_attention"], cfg.max_position_embeddings) if nested else rope
    tied = model.lm_head.weight is model.get_input_embeddings().weight
    norm0 = inner.norm.weight.detach()
    eos = cfg.eos_token_id
    eos = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
    tensors = []
    for name, t in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        tensors.append([name, list(t.shape)])
    embed = model.get_input_embeddings()
    doc = {
        "source": "transformers " + __import__("transformers").__version__,
        "model_type": cfg.model_type,
        "V": cfg.vocab_size, "C": cfg.hidden_size, "L": L,
        "NH": cfg.num_attention_heads, "NKV": cfg.num_key_value_heads,
        "HD": attn.head_dim, "FF": cfg.intermediate_size,
        "max_positions": cfg.max_position_embeddings,
        "rms_norm_eps": float(cfg.rms_norm_eps),
        "norm_offset": 1.0 if bool((norm0 == 0).all()) else 0.0,
        "embed_scale": float(getattr(embed, "scalar_embed_scale", 1.0)),
        "query_scale": float(attn.scaling),
        "attn_softcap": float(getattr(cfg, "attn_logit_softcapping", None) or 0),
        "final_softcap": float(getattr(cfg, "final_logit_softcapping", None) or 0),
        "act": activation_name(layer0.mlp.act_fn),
        "tie_word_embeddings": tied,
        "qkv_bias": attn.q_proj.bias is not None,
        "o_bias": attn.o_proj.bias is not None,
        "mlp_bias": layer0.mlp.gate_proj.bias is not None,
        "qk_norm": hasattr(attn, "q_norm"),
        "sandwich_norms": hasattr(layer0, "pre_feedforward_layernorm"),
        "rope": rope, "rope_local": rope_local,
        "sliding_window": int(cfg.sliding_window or 0) if any(layer_sliding) else 0,
        "layer_sliding": layer_sliding,
        "bos_id": -1 if cfg.bos_token_id is None else cfg.bos_token_id,
        "pad_id": -1 if cfg.pad_token_id is None else cfg.pad_token_id,
        "eos_ids": eos,
        "param_count": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out_path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    args = ap.parse_args()
    probe_stories(args.shared, "tests/fixtures/stories260k_probe.json")
    for cfg in sorted(glob.glob("tests/fixtures/model/*.config.json")):
        expect_model(cfg, cfg.replace(".config.json", ".expected.json"))


if __name__ == "__main__":
    sys.exit(main())
