#!/usr/bin/env python3
"""gen_model_fixtures.py - one training step of small decoders as PyTorch + transformers + PEFT
compute it, written down for tests/unit/test_exec_cpu.c (the C side never runs Python).

For each case in CASES, tests/fixtures/golden/CASE/ gets:
    config.json, model.safetensors   a small random model of that family (fp32), as
                                     save_pretrained writes it
    adapter.safetensors              LoRA A and B for every linear layer but lm_head, in PEFT's
                                     saved names, B random (not PEFT's zeros) so every LoRA
                                     gradient is non-zero; qwen3 also trains every norm as
                                     modules_to_save (additional_target: norm)
    expected.safetensors             inputs: input_ids, labels, seq, pos (B, T) as F32
                                     full.logits (B, T, V), full.loss (1), full.count (1)
                                     full.grad.NAME   d loss / d parameter, every parameter
                                     lora.logits, lora.loss, lora.grad.NAME (A and B only)
                                     llama: lora_dropout.* the same with lora_dropout 0.25,
                                     PEFT's dropout replaced by llfc's Philox mask (seed 42,
                                     step 0), reimplemented here in numpy

The micro-batch has B = 2 rows of T tokens; unless the case says no packing, row 1 holds two
packed sequences. transformers' reference runs each sequence as its own forward pass (fresh
positions from 0) and concatenates the logits: that is exactly what packing must equal. The
loss is transformers' causal LM loss over the concatenated rows: position t predicts label
t + 1, -100 ignored, mean over counted tokens. Attention is "eager" (exact, soft-caps).

kernels.safetensors: every C reference kernel's inputs, outputs and gradients (autograd), and
transformers' RoPE inv_freq/attention scaling for each rope type (test_kernels.c).

trainable.json: which parameters LLaMA-Factory's init_adapter leaves trainable for several
finetuning_type / freeze_* / lora_target / additional_target settings, and which of them HF
Trainer decays (test_graph.c checks the plan's flags against it).

stories260K (../shared/models/stories260K/hf, a real pretrained Llama): its logits on a prompt,
and the tokens of greedy decoding from BOS, checked here against llama2.c's expected output.
Written to tests/fixtures/golden/stories260k/expected.safetensors.

Run from the repository root (needs torch, transformers, peft, safetensors, tokenizers):
    python3 tests/golden/gen_model_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

OUT = "tests/fixtures/golden"
B, T = 2, 24

# family, config overrides, lora options, packing
CASES = {
    "llama": dict(
        model_type="llama", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=16),
        max_position_embeddings=64, rope_theta=500.0,
        _lora=dict(r=4, lora_alpha=8, use_rslora=False, dropout=0.25)),
    "qwen2": dict(
        model_type="qwen2", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=64,
        rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16),
        rope_theta=1000.0,
        _lora=dict(r=8, lora_alpha=16, use_rslora=True)),
    "qwen3": dict(
        model_type="qwen3", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=64,
        rope_theta=10000.0,
        _lora=dict(r=4, lora_alpha=8, use_rslora=False, modules_to_save=["norm"])),
    "gemma": dict(
        model_type="gemma", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        rms_norm_eps=1e-6, max_position_embeddings=64, hidden_activation="gelu_pytorch_tanh",
        _lora=dict(r=4, lora_alpha=8, use_rslora=False)),
    "gemma2": dict(
        model_type="gemma2", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rms_norm_eps=1e-6, max_position_embeddings=64, query_pre_attn_scalar=24,
        sliding_window=6, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
        _lora=dict(r=4, lora_alpha=8, use_rslora=False)),
    "gemma3_text": dict(
        model_type="gemma3_text", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rms_norm_eps=1e-6, max_position_embeddings=64, query_pre_attn_scalar=16,
        sliding_window=5, layer_types=["sliding_attention", "full_attention"],
        rope_theta=10000.0, rope_local_base_freq=100.0,
        rope_scaling=dict(rope_type="linear", factor=2.0),
        _lora=dict(r=4, lora_alpha=8, use_rslora=False)),
    "llama_dynamic": dict(
        model_type="llama", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=16,
        rope_scaling=dict(rope_type="dynamic", factor=2.0), rope_theta=100.0,
        attention_bias=True, mlp_bias=True,
        _packing=False, _lora=None),
    "mistral_linear": dict(
        model_type="mistral", vocab_size=256, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=64,
        sliding_window=7, rope_scaling=dict(rope_type="linear", factor=2.0),
        _lora=None),
}

LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(case, spec):
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {k: v for k, v in spec.items() if not k.startswith("_")}
    model_type = kw.pop("model_type")
    config = AutoConfig.for_model(model_type, **kw)
    config._attn_implementation = "eager"
    torch.manual_seed(1234 + sum(map(ord, case)))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                             dtype=torch.float32)
    offset = 1.0 if model_type.startswith("gemma") else 0.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # RMSNorm weights near their identity value
                p.copy_(1.0 - offset + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.eval()  # no dropout anywhere (the configs have none; be sure)
    return model


def make_batch(case, spec, V):
    g = torch.Generator().manual_seed(99 + len(case))
    ids = torch.randint(3, V, (B, T), generator=g)
    labels = ids.clone()
    packing = spec.get("_packing", True)
    split = 10 if packing else T  # row 1: sequences [0, 10) and [10, T)
    seq = torch.zeros(B, T, dtype=torch.long)
    pos = torch.arange(T).repeat(B, 1)
    seq[1, split:] = 1
    pos[1, split:] = torch.arange(T - split)
    # prompt tokens learn nothing (-100), as an SFT row would have them
    labels[0, :3] = -100
    labels[1, :2] = -100
    if packing:
        labels[1, split:split + 3] = -100
    labels[0, 17] = -100  # one in the middle too
    pieces = [(0, 0, T), (1, 0, split)] + ([(1, split, T)] if packing else [])
    return ids, labels, seq, pos, pieces


def forward_pieces(model, ids, pieces, V):
    """Logits (B, T, V) as separate forward passes over each packed sequence."""
    logits = torch.zeros(B, T, V)
    parts = []
    for b, s, e in pieces:
        LlfcDropout.rows = torch.arange(b * T + s, b * T + e)
        out = model(input_ids=ids[b:b + 1, s:e]).logits[0]
        parts.append((b, s, e, out))
    rows = []
    for b in range(B):
        rows.append(torch.cat([o for (bb, s, e, o) in sorted(parts, key=lambda x: x[1]) if bb == b]))
    return torch.stack(rows)


def causal_lm_loss(logits, labels):
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    count = (shift_labels != -100).sum()
    loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100,
                                             reduction="sum") / count
    return loss, count


# --- llfc's dropout mask, bit for bit (runtime/rng.h, kernels/dropout.h), so PEFT's LoRA dropout
# can be replaced by the very mask the C executor draws: keep[i] = uniform(seed,
# (RNG_DROPOUT << 32) | step, (adapter << 40) + i) >= p over the adapter's input (B*T, in).

def philox4x32_10(ctr, key):
    import numpy as np
    M0, M1, W0, W1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), 0x9E3779B9, 0xBB67AE85
    c = [x.astype(np.uint64) for x in ctr]
    k0, k1 = key
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c[0], M1 * c[2]
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & mask, p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return c


def llfc_uniform(seed, purpose, first, n):
    import numpy as np
    assert first % 4 == 0
    blocks = np.arange(first // 4, first // 4 + (n + 3) // 4, dtype=np.uint64)
    mask = np.uint64(0xFFFFFFFF)
    ctr = [blocks & mask, blocks >> np.uint64(32),
           np.full_like(blocks, purpose & 0xFFFFFFFF), np.full_like(blocks, purpose >> 32)]
    out = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    u = np.stack(out, axis=1).reshape(-1)[:n]
    return (u >> np.uint64(8)).astype(np.float64) * 2.0 ** -24


class LlfcDropout(torch.nn.Module):
    """PEFT's lora_dropout with llfc's mask; `rows` says which tokens of the (B*T) batch the
    current forward (one packed piece) holds."""
    rows = None

    def __init__(self, mask, p):
        super().__init__()
        self.mask, self.p = mask, p

    def forward(self, x):
        m = self.mask[LlfcDropout.rows].reshape(x.shape)
        return x * m / (1 - self.p)


def install_llfc_dropout(pm, seed, step, p, n_tokens):
    """Replace every adapter's dropout; adapters are numbered as llfc numbers them: layer by
    layer, q, k, v, o, gate, up, down."""
    import numpy as np
    mods = []
    for name, mod in pm.named_modules():
        if hasattr(mod, "lora_dropout") and "default" in mod.lora_dropout:
            layer = int(name.split(".layers.")[1].split(".")[0])
            mods.append((layer, LINEARS.index(name.split(".")[-1]), mod))
    mods.sort(key=lambda t: (t[0], t[1]))
    purpose = (3 << 32) | step  # RNG_DROPOUT
    for adapter, (_, _, mod) in enumerate(mods):
        K = mod.in_features
        u = llfc_uniform(seed, purpose, adapter << 40, n_tokens * K)
        keep = torch.tensor((u >= p).astype(np.float32)).reshape(n_tokens, K)
        mod.lora_dropout["default"] = LlfcDropout(keep, p)


def saved_name(name):
    """PEFT's name in adapter_model.safetensors for a parameter of the PeftModel."""
    return name.replace(".modules_to_save.default", "").replace(".default", "")


def gen_case(case, spec):
    from peft import LoraConfig, get_peft_model

    folder = os.path.join(OUT, case)
    os.makedirs(folder, exist_ok=True)
    model = make_model(case, spec)
    model.save_pretrained(folder, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)
    V = model.config.vocab_size
    ids, labels, seq, pos, pieces = make_batch(case, spec, V)
    out = {"input_ids": ids.float(), "labels": labels.float(), "seq": seq.float(),
           "pos": pos.float()}

    # full fine-tuning: every parameter
    model.zero_grad()
    logits = forward_pieces(model, ids, pieces, V)
    loss, count = causal_lm_loss(logits, labels)
    loss.backward()
    out["full.logits"] = logits.detach().contiguous()
    out["full.loss"] = loss.detach().reshape(1)
    out["full.count"] = count.float().reshape(1)
    for name, p in model.named_parameters():
        out["full.grad." + name] = p.grad.detach().clone().contiguous()
    print(f"{case}: loss {loss.item():.6f} over {count.item()} tokens, "
          f"{sum(1 for _ in model.parameters())} parameters")

    lora = spec.get("_lora")
    if lora:
        model.zero_grad()
        cfg = LoraConfig(r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=0.0,
                         target_modules=LINEARS, use_rslora=lora["use_rslora"], bias="none",
                         modules_to_save=lora.get("modules_to_save"), task_type="CAUSAL_LM")
        pm = get_peft_model(model, cfg)
        torch.manual_seed(7)
        adapter = {}
        with torch.no_grad():
            for name, p in pm.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.2 * torch.randn_like(p))
                if p.requires_grad:  # LoRA A/B, and modules_to_save copies in PEFT's saved names
                    adapter[saved_name(name)] = p.detach().clone().contiguous()
        save_file(adapter, os.path.join(folder, "adapter.safetensors"), metadata={"format": "pt"})
        logits = forward_pieces(pm, ids, pieces, V)
        loss, count = causal_lm_loss(logits, labels)
        loss.backward()
        out["lora.logits"] = logits.detach().contiguous()
        out["lora.loss"] = loss.detach().reshape(1)
        out["lora.count"] = count.float().reshape(1)
        n = 0
        for name, p in pm.named_parameters():
            if p.requires_grad:
                out["lora.grad." + saved_name(name)] = p.grad.detach().clone().contiguous()
                n += 1
        print(f"{case}: lora loss {loss.item():.6f}, {n} trainable tensors")
        if lora.get("dropout"):  # the same step with llfc's dropout masks (seed 42, step 0)
            pm.train()
            install_llfc_dropout(pm, 42, 0, lora["dropout"], B * T)
            pm.zero_grad()
            logits = forward_pieces(pm, ids, pieces, V)
            loss, count = causal_lm_loss(logits, labels)
            loss.backward()
            out["lora_dropout.loss"] = loss.detach().reshape(1)
            out["lora_dropout.count"] = count.float().reshape(1)
            out["lora_dropout.logits"] = logits.detach().contiguous()
            for name, p in pm.named_parameters():
                if p.requires_grad:
                    out["lora_dropout.grad." + saved_name(name)] = p.grad.detach().clone().contiguous()
            print(f"{case}: lora with dropout {lora['dropout']}: loss {loss.item():.6f}")
    save_file(out, os.path.join(folder, "expected.safetensors"), metadata={"format": "pt"})


def gen_stories(shared):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    hf = os.path.join(shared, "models/stories260K/hf")
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    prompt = [1] + tok.encode("Once upon a time, there was a little", add_special_tokens=False).ids
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    # greedy from BOS, as llama2.c's `run stories260K.bin -t 0.0 -n 200`: BOS, then 200 tokens
    seq = [1]
    with torch.no_grad():
        while len(seq) < 201:
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
    text = tok.decode(seq[1:], skip_special_tokens=False)
    want = open(os.path.join(shared, "models/stories260K/llama2c_test_all_expected_stdout.txt")).read()
    same = text == want
    print(f"stories260K: greedy text equals llama2.c's expected output: {same}")
    if not same:
        print("ours:", repr(text[:300]))
        print("want:", repr(want[:300]))
        sys.exit(1)
    folder = os.path.join(OUT, "stories260k")
    os.makedirs(folder, exist_ok=True)
    save_file({"prompt": ids.float(), "prompt.logits": logits[0].contiguous(),
               "greedy": torch.tensor([seq]).float()},
              os.path.join(folder, "expected.safetensors"), metadata={"format": "pt"})


# RoPE variants for kernels.safetensors: name -> rope_parameters (head_dim 16, max positions 32)
ROPES = {
    "default": dict(rope_type="default", rope_theta=10000.0),
    "linear": dict(rope_type="linear", rope_theta=10000.0, factor=4.0),
    "dynamic": dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0),  # at seq_len 40
    "llama3": dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                   high_freq_factor=4.0, original_max_position_embeddings=8),
    "yarn": dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                 original_max_position_embeddings=8),
    "yarn_mscale": dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, mscale=1.0,
                        mscale_all_dim=0.5, original_max_position_embeddings=8, beta_fast=16.0,
                        beta_slow=2.0),
    "yarn_notrunc": dict(rope_type="yarn", rope_theta=10000.0, factor=3.0,
                         original_max_position_embeddings=8, truncate=False,
                         attention_factor=1.25),
}


def gen_kernels():
    """kernels.safetensors: each C reference kernel's inputs, outputs and (through autograd
    with a random upstream gradient) input gradients, for test_kernels.c."""
    import math

    import torch.nn.functional as F
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    torch.manual_seed(5)
    out = {}

    def leaf(x):
        return x.clone().requires_grad_(True)

    # matmul: C = 0.5 C0 + 1.5 A B, sizes across the 64/128 blocks
    M, K, N = 70, 150, 130
    a, b, c0 = torch.randn(M, K), torch.randn(K, N), torch.randn(M, N)
    out.update({"mm.a": a, "mm.b": b, "mm.c0": c0, "mm.c": 0.5 * c0 + 1.5 * (a.double() @ b.double()).float()})

    # embedding, scale 1.7, repeated ids
    table, ids = leaf(torch.randn(50, 24)), torch.randint(0, 50, (37,))
    ids[5] = ids[9] = ids[30] = 7
    y = table[ids] * 1.7
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({"emb.table": table.detach(), "emb.ids": ids.float(), "emb.out": y.detach(),
                "emb.dout": dy, "emb.dtable": table.grad})

    # rmsnorm, offsets 0 (llama) and 1 (gemma)
    for off in (0, 1):
        x, w = leaf(torch.randn(9, 40)), leaf(torch.randn(40) * 0.5 + (1 - off))
        var = x.pow(2).mean(-1, keepdim=True)
        y = x * torch.rsqrt(var + 1e-5) * (off + w)
        dy = torch.randn_like(y)
        y.backward(dy)
        out.update({f"rms{off}.x": x.detach(), f"rms{off}.w": w.detach(), f"rms{off}.y": y.detach(),
                    f"rms{off}.dy": dy, f"rms{off}.dx": x.grad, f"rms{off}.dw": w.grad})

    # rope: inv_freq and attention scaling per variant, as transformers computes them
    for name, rp in ROPES.items():
        cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=16,
                          max_position_embeddings=32, rope_parameters=rp)
        fn = ROPE_INIT_FUNCTIONS[rp["rope_type"]] if rp["rope_type"] != "default" else None
        if fn is None:
            from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
            inv, scale = LlamaRotaryEmbedding.compute_default_rope_parameters(cfg, None)
        else:
            inv, scale = fn(cfg, None, seq_len=40 if name == "dynamic" else None)
        out[f"rope.{name}.inv_freq"] = inv.float()
        out[f"rope.{name}.scale"] = torch.tensor([float(scale)])
    # rope applied (rotate_half), positions restarting for a packed sequence
    inv = out["rope.yarn.inv_freq"]
    scale = float(out["rope.yarn.scale"][0])
    pos = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6])
    x = leaf(torch.randn(12, 3, 16))
    freqs = (inv[None, :].float() * pos[:, None].float())
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = (emb.cos() * scale)[:, None, :], (emb.sin() * scale)[:, None, :]
    rot = torch.cat((-x[..., 8:], x[..., :8]), -1)
    y = x * cos + rot * sin
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({"ropex.x": x.detach(), "ropex.pos": pos.float(), "ropex.y": y.detach(),
                "ropex.dy": dy, "ropex.dx": x.grad})

    # attention: GQA, row 1 packs two sequences; plain, sliding window, soft-cap + window
    Bq, Tq, NH, NKV, HD = 2, 12, 4, 2, 8
    seq = torch.zeros(Bq, Tq, dtype=torch.long)
    seq[1, 5:] = 1
    q0, k0, v0 = torch.randn(Bq, Tq, NH, HD), torch.randn(Bq, Tq, NKV, HD), torch.randn(Bq, Tq, NKV, HD)
    out.update({"attn.q": q0, "attn.k": k0, "attn.v": v0, "attn.seq": seq.float()})
    for name, window, cap in (("plain", 0, 0.0), ("window", 4, 0.0), ("softcap", 4, 3.0)):
        q, k, v = leaf(q0), leaf(k0), leaf(v0)
        kk = k.repeat_interleave(NH // NKV, dim=2)
        vv = v.repeat_interleave(NH // NKV, dim=2)
        s = torch.einsum("bihd,bjhd->bhij", q, kk) * 0.3
        if cap:
            s = cap * torch.tanh(s / cap)
        i = torch.arange(Tq)[:, None]
        j = torch.arange(Tq)[None, :]
        allowed = (j <= i)[None] & (seq[:, :, None] == seq[:, None, :])
        if window:
            allowed = allowed & ((i - j) < window)[None]
        s = s.masked_fill(~allowed[:, None], float("-inf"))
        p = torch.softmax(s, -1)
        o = torch.einsum("bhij,bjhd->bihd", p, vv)
        do = torch.randn_like(o)
        o.backward(do)
        out.update({f"attn.{name}.out": o.detach(), f"attn.{name}.dout": do,
                    f"attn.{name}.dq": q.grad, f"attn.{name}.dk": k.grad, f"attn.{name}.dv": v.grad})

    # GLU: silu, gelu (tanh), gelu (erf)
    g0, u0 = torch.randn(300) * 3, torch.randn(300)
    out.update({"glu.gate": g0, "glu.up": u0})
    acts = {"silu": F.silu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "gelu": F.gelu}
    for name, fn in acts.items():
        g, u = leaf(g0), leaf(u0)
        h = fn(g) * u
        dh = torch.randn_like(h)
        h.backward(dh)
        out.update({f"glu.{name}.out": h.detach(), f"glu.{name}.dout": dh,
                    f"glu.{name}.dgate": g.grad, f"glu.{name}.dup": u.grad})

    # soft-cap
    x = leaf(torch.randn(200) * 6)
    y = 2.5 * torch.tanh(x / 2.5)
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({"cap.x": x.detach(), "cap.y": y.detach(), "cap.dy": dy, "cap.dx": x.grad})

    # cross-entropy: shifted, -100 ignored, sum; gradient of 0.25 * sum
    logits = leaf(torch.randn(2, 6, 11) * 2)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 2] = labels[1, 1] = labels[1, 4] = -100
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="sum")
    (0.25 * loss).backward()
    out.update({"ce.logits": logits.detach(), "ce.labels": labels.float(),
                "ce.sum": loss.detach().reshape(1),
                "ce.count": (labels[:, 1:] != -100).sum().float().reshape(1),
                "ce.dlogits": logits.grad})

    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    save_file(out, os.path.join(OUT, "kernels.safetensors"), metadata={"format": "pt"})
    print(f"kernels: {len(out)} tensors")


# (case model, LLaMA-Factory finetuning arguments): LLaMA-Factory + PEFT decide what trains
TRAINABLE = [
    ("llama", dict(finetuning_type="full")),
    ("llama", dict(finetuning_type="freeze")),
    ("llama", dict(finetuning_type="freeze", freeze_trainable_layers=-1,
                   freeze_trainable_modules="mlp", freeze_extra_modules="embed_tokens,norm")),
    ("gemma2", dict(finetuning_type="freeze", freeze_trainable_layers=1,
                    freeze_trainable_modules="self_attn,mlp", freeze_extra_modules="norm")),
    ("qwen3", dict(finetuning_type="freeze", freeze_trainable_layers=1,
                   freeze_trainable_modules="self_attn,post_attention_layernorm")),
    ("qwen3", dict(finetuning_type="freeze", freeze_trainable_layers=5)),
    ("llama", dict(finetuning_type="lora", lora_target="all")),
    ("llama", dict(finetuning_type="lora", lora_target="q_proj,v_proj",
                   additional_target="embed_tokens,lm_head")),
    ("gemma2", dict(finetuning_type="lora", lora_target="all", additional_target="norm")),
    ("qwen2", dict(finetuning_type="lora", lora_target="down_proj,o_proj")),
]


def gen_trainable():
    """trainable.json: for each entry, the parameters LLaMA-Factory's init_adapter leaves
    trainable (PEFT's saved names: no ".default", no "modules_to_save."), and of those the ones
    HF Trainer applies weight decay to (get_decay_parameter_names)."""
    from llamafactory.hparams import FinetuningArguments, ModelArguments
    from llamafactory.model.adapter import init_adapter
    from transformers import AutoConfig, AutoModelForCausalLM, Trainer

    out = []
    for case, args in TRAINABLE:
        d = os.path.join(OUT, case)
        cfg = AutoConfig.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        model = init_adapter(cfg, model, ModelArguments(model_name_or_path=d),
                             FinetuningArguments(**args), True)
        decay = set(Trainer.get_decay_parameter_names(None, model))

        def saved(n):
            return n.replace(".modules_to_save.default", "").replace(".default", "")

        names = [n for n, p in model.named_parameters() if p.requires_grad]
        out.append({"case": case, "args": args, "trainable": [saved(n) for n in names],
                    "decay": [saved(n) for n in names if n in decay]})
        print(f"trainable: {case} {args}: {len(names)} tensors")
    with open(os.path.join(OUT, "trainable.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    torch.set_grad_enabled(True)
    for case, spec in CASES.items():
        if not a.cases or case in a.cases:
            gen_case(case, spec)
    if not a.cases or "stories260k" in a.cases:
        gen_stories(a.shared)
    if not a.cases or "kernels" in a.cases:
        gen_kernels()
    if not a.cases or "trainable" in a.cases:
        gen_trainable()


if __name__ == "__main__":
    main()
