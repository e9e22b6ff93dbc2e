#!/usr/bin/env python3
"""check_init_model.py - does transformers load what `llfc init-model` writes, bit for bit?

For every family llfc supports, runs `llfc init-model` and then, with Hugging Face's own code:
  - AutoConfig + AutoModelForCausalLM.from_pretrained load the folder with no missing,
    unexpected or mismatched keys, and the config has the shapes the flags asked for;
  - every tensor transformers loaded equals what Python's `safetensors` reads from the file,
    and the parameter count equals the sum of the file's tensors (tied embeddings once);
  - the values are the documented ones: norms 1 (0 for Gemma's 1 + w form), biases 0, and
    the random matrices equal an independent Python Philox4x32-10 + Box-Muller (rng.h's
    formulas) exactly in f32 and after round-to-nearest-even in bf16;
  - a forward pass on a few tokens gives finite logits of shape (1, T, V);
  - the same flags give the same bytes; a sharded write (--max-shard-size) loads the same way;
    --tokenizer copies a tokenizer AutoTokenizer loads.

Usage (from the repository root; needs `pip install torch transformers safetensors numpy`):
    python3 tests/golden/check_init_model.py [--llfc build/llfc] [--shared ../shared]
Exit status 0 when every check passes; the report names each family and check.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# --- an independent Philox4x32-10 (Random123's constants), as rng.h maps it


M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """ctr: uint64 array (n, 4) of 32-bit words; key: two ints. Returns (n, 4) uint64."""
    c = ctr.astype(np.uint64).copy()
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(10):
        if r:
            k0 = np.uint64((int(k0) + W0) & MASK)
            k1 = np.uint64((int(k1) + W1) & MASK)
        p0 = np.uint64(M0) * c[:, 0]
        p1 = np.uint64(M1) * c[:, 2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK)
        c = np.stack([hi1 ^ c[:, 1] ^ k0, lo1, hi0 ^ c[:, 3] ^ k1, lo0], axis=1)
    return c


def check_kat():
    """Random123's known answers, so the oracle itself is right."""
    kat = [([0] * 4, [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
           ([MASK] * 4, [MASK, MASK], [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
           ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1])]
    for ctr, key, want in kat:
        got = philox4x32_10(np.array([ctr], dtype=np.uint64), key)[0]
        assert [int(x) for x in got] == want, "python Philox fails its own known answers"


def normals(seed, kind, stream, n):
    """rng_normal(seed, rng_purpose(kind, stream), i) for i < n, in float64 before rounding."""
    blocks = (n + 3) // 4
    idx = np.arange(blocks, dtype=np.uint64)
    ctr = np.stack([idx & np.uint64(MASK), idx >> np.uint64(32),
                    np.full(blocks, stream, dtype=np.uint64), np.full(blocks, kind, dtype=np.uint64)], axis=1)
    r = philox4x32_10(ctr, [seed & MASK, seed >> 32])
    u1 = (r[:, [0, 2]].astype(np.float64) + 0.5) * 2.0**-32
    u2 = r[:, [1, 3]].astype(np.float64) * 2.0**-32
    rad = np.sqrt(-2.0 * np.log(u1))
    z = np.empty((blocks, 4))
    z[:, 0], z[:, 1] = rad[:, 0] * np.cos(2 * math.pi * u2[:, 0]), rad[:, 0] * np.sin(2 * math.pi * u2[:, 0])
    z[:, 2], z[:, 3] = rad[:, 1] * np.cos(2 * math.pi * u2[:, 1]), rad[:, 1] * np.sin(2 * math.pi * u2[:, 1])
    return z.reshape(-1)[:n]


RNG_INIT_WEIGHTS = 1

# --- the families, each with shapes that exercise its features

FAMILIES = [
    ("llama", ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--intermediate", "160", "--vocab", "512"]),
    ("mistral", ["--hidden", "64", "--layers", "2", "--heads", "8", "--kv-heads", "2", "--intermediate", "128", "--vocab", "300"]),
    ("qwen2", ["--hidden", "56", "--layers", "2", "--heads", "7", "--kv-heads", "1", "--intermediate", "152", "--vocab", "400", "--tie-embeddings", "true"]),
    ("qwen3", ["--hidden", "64", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--intermediate", "192", "--vocab", "512"]),
    ("gemma", ["--hidden", "48", "--layers", "2", "--heads", "4", "--kv-heads", "1", "--head-dim", "24", "--intermediate", "96", "--vocab", "256"]),
    ("gemma2", ["--hidden", "64", "--layers", "4", "--heads", "8", "--kv-heads", "4", "--intermediate", "128", "--vocab", "256"]),
    ("gemma3_text", ["--hidden", "64", "--layers", "7", "--heads", "4", "--kv-heads", "1", "--head-dim", "32", "--intermediate", "192", "--vocab", "512"]),
]


class Report:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        print(("  ok    " if ok else "  FAIL  ") + what)
        if not ok:
            self.failures += 1
        return ok


def run_llfc(llfc, family, args, out, extra=()):
    cmd = [llfc, "init-model", "--family", family, *args, *extra, "-o", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stderr.strip()


def folder_digest(d):
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def read_safetensors(d):
    from safetensors import safe_open
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), framework="pt") as st:
            assert st.metadata().get("format") == "pt"
            for k in st.keys():
                out[k] = st.get_tensor(k)
    return out, files


def expected_values(name, shape, index, seed, norm_value, torch):
    """What init-model promises for tensor number `index` (HF order)."""
    n = int(np.prod(shape))
    if name.endswith("norm.weight"):
        return torch.full(shape, float(norm_value), dtype=torch.float32)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.float32)
    # rng.c rounds the double Box-Muller result to float, then scales by std in float
    z = normals(seed, RNG_INIT_WEIGHTS, index, n).astype(np.float32) * np.float32(0.02)
    return torch.from_numpy(z.astype(np.float32).reshape(shape))


def check_family(llfc, family, args, rep, seed=7):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    print(f"{family}:")
    work = tempfile.mkdtemp(prefix=f"llfc_init_{family}_")
    try:
        results = {}
        for dtype in ("f32", "bf16"):
            out = os.path.join(work, dtype)
            msg = run_llfc(llfc, family, args, out, ["--dtype", dtype, "--seed", str(seed)])
            cfg = AutoConfig.from_pretrained(out)
            torch_dtype = torch.float32 if dtype == "f32" else torch.bfloat16
            model, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch_dtype, output_loading_info=True)
            clean = not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
            rep.check(clean, f"{dtype}: from_pretrained loads with no missing/unexpected/mismatched keys {'' if clean else info}")
            flags = dict(zip(args[::2], args[1::2]))
            shapes_ok = (cfg.model_type == family and cfg.hidden_size == int(flags["--hidden"])
                         and cfg.num_hidden_layers == int(flags["--layers"])
                         and cfg.num_attention_heads == int(flags["--heads"])
                         and cfg.num_key_value_heads == int(flags.get("--kv-heads", flags["--heads"]))
                         and cfg.intermediate_size == int(flags["--intermediate"])
                         and cfg.vocab_size == int(flags["--vocab"])
                         and model.model.layers[0].self_attn.head_dim == int(flags.get("--head-dim", int(flags["--hidden"]) // int(flags["--heads"]))))
            rep.check(shapes_ok, f"{dtype}: config shapes are the flags'")
            tensors, files = read_safetensors(out)
            sd = model.state_dict()
            same = all(torch.equal(sd[k], v) for k, v in tensors.items())
            rep.check(same and all(v.dtype == torch_dtype for v in tensors.values()),
                      f"{dtype}: all {len(tensors)} tensors transformers loaded equal the file's ({torch_dtype})")
            count = sum(v.numel() for v in tensors.values())
            rep.check(count == model.num_parameters(),
                      f"{dtype}: parameter count {model.num_parameters()} = sum over the file")
            reported = f"{count} parameters" in msg
            rep.check(reported, f"{dtype}: llfc reported the same count ({msg})")
            # values: norms, biases, and the Philox normals in HF order
            order = [k for k in model.state_dict().keys() if k in tensors]
            norm_value = 0.0 if "gemma" in family else 1.0
            worst = 0.0
            exact = True
            for i, k in enumerate(order):
                want = expected_values(k, tuple(tensors[k].shape), i, seed, norm_value, torch)
                got = tensors[k]
                want_cast = want.to(torch_dtype)  # torch rounds to nearest even, as llfc
                if not torch.equal(got, want_cast):
                    exact = False
                    worst = max(worst, float((got.double() - want).abs().max()))
            rep.check(exact, f"{dtype}: every value equals Python's Philox4x32-10 + Box-Muller"
                             f"{'' if exact else f' (worst diff {worst})'} (norms {norm_value:g}, biases 0)")
            emb = tensors["model.embed_tokens.weight"].double()
            rep.check(abs(float(emb.std()) - 0.02) < 0.002 and abs(float(emb.mean())) < 0.002,
                      f"{dtype}: embed std {float(emb.std()):.4f} mean {float(emb.mean()):+.5f}")
            with torch.no_grad():
                ids = torch.tensor([[1, 5, 7, 3, 2, 9]])
                logits = model(input_ids=ids).logits
            rep.check(tuple(logits.shape) == (1, 6, cfg.vocab_size) and bool(torch.isfinite(logits).all()),
                      f"{dtype}: forward pass gives finite logits {tuple(logits.shape)}")
            results[dtype] = (tensors, files)
        # determinism and sharding
        again = os.path.join(work, "again")
        run_llfc(llfc, family, args, again, ["--dtype", "bf16", "--seed", str(seed)])
        rep.check(folder_digest(again) == folder_digest(os.path.join(work, "bf16")),
                  "same flags, same seed: identical bytes")
        other = os.path.join(work, "other")
        run_llfc(llfc, family, args, other, ["--dtype", "bf16", "--seed", str(seed + 1)])
        rep.check(folder_digest(other) != folder_digest(os.path.join(work, "bf16")), "another seed: other weights")
        sharded = os.path.join(work, "sharded")
        run_llfc(llfc, family, args, sharded, ["--dtype", "bf16", "--seed", str(seed), "--max-shard-size", "40KB"])
        model = AutoModelForCausalLM.from_pretrained(sharded, dtype=torch.bfloat16)
        t1, _ = results["bf16"]
        t2, files = read_safetensors(sharded)
        sd = model.state_dict()
        rep.check(len(files) > 1 and os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
                  and all(torch.equal(sd[k], t1[k]) for k in t1) and t1.keys() == t2.keys(),
                  f"sharded into {len(files)} files + index: transformers loads the same weights")
        idx = json.load(open(os.path.join(sharded, "model.safetensors.index.json")))
        total = sum(v.numel() * v.element_size() for v in t2.values())
        rep.check(idx["metadata"]["total_size"] == total and set(idx["weight_map"]) == set(t2),
                  f"index: total_size {total}, weight_map lists every tensor")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_tokenizer(llfc, shared, rep):
    from transformers import AutoTokenizer, AutoModelForCausalLM
    tok_dir = os.path.join(shared, "models/stories260K/hf")
    if not os.path.isdir(tok_dir):
        print("tokenizer: SKIPPED (no ../shared)")
        return
    print("tokenizer (stories260K's):")
    work = tempfile.mkdtemp(prefix="llfc_init_tok_")
    try:
        run_llfc(llfc, "llama", FAMILIES[0][1], work, ["--tokenizer", tok_dir])
        tok = AutoTokenizer.from_pretrained(work)
        ids = tok("Once upon a time")["input_ids"]
        rep.check(len(ids) > 1 and max(ids) < 512, f"AutoTokenizer loads the copy: {ids}")
        AutoModelForCausalLM.from_pretrained(work)
        bad = subprocess.run([llfc, "init-model", "--family", "llama", *FAMILIES[0][1][:-2], "--vocab", "100",
                              "--tokenizer", tok_dir, "-o", os.path.join(work, "bad")], capture_output=True, text=True)
        rep.check(bad.returncode == 1 and "--vocab 512 or more" in bad.stderr,
                  f"a vocabulary smaller than the tokenizer is refused: {bad.stderr.strip()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llfc", default="build/llfc")
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    ap.add_argument("--family", action="append", help="only these families")
    args = ap.parse_args()
    import transformers, torch, safetensors
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, safetensors {safetensors.__version__}")
    check_kat()
    rep = Report()
    for family, flags in FAMILIES:
        if args.family and family not in args.family:
            continue
        check_family(args.llfc, family, flags, rep)
    check_tokenizer(args.llfc, args.shared, rep)
    print(f"{'all checks passed' if rep.failures == 0 else f'{rep.failures} check(s) FAILED'}")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
