#!/usr/bin/env python3
"""bench_train_hf.py - the reference side of bench_train: transformers + PEFT training the same
token blocks as an llfc trainer, the way LLaMA-Factory runs them, timed step by step.

    bench_train_hf.py train --model DIR --blocks FILE --rows N --row-len T --batch B --steps S
                            --method lora|full [--lr X] [--device cuda|cpu]
                            [--gradient-checkpointing] --out RESULT.json
    bench_train_hf.py peak [--device cuda|cpu] --out RESULT.json

Run by bench_train.py, one process per training run, so that each run starts from an empty
GPU, an out-of-memory error ends only its own run, and nvidia-smi's memory.used polled from
outside sees this process alone. Nothing here is needed by CI: it imports torch, transformers
and peft (the GPU machine's image has them).

What "the way LLaMA-Factory runs them" means here (LF 0.9 with bf16: true, its defaults):
  - the model loaded in bf16 with the best attention there is: flash_attention_2 when the
    flash_attn package imports, else PyTorch's sdpa (which takes FlashAttention-2's kernel
    itself for causal bf16 attention without a mask: the rows here are full packed blocks, so
    no attention mask is passed, as LF's pt collator passes none for unpadded rows), with
    FlashAttention-3 activated inside sdpa where this PyTorch lists it (see best_attention);
  - LoRA: PEFT LoraConfig(r, alpha, dropout 0, target_modules="all-linear"), the trainable
    (adapter) weights upcast to fp32; full: every weight upcast to fp32 (LF's
    cast_trainable_params_to_fp32); forward and backward under torch.autocast(bf16);
  - loss: the model's own (labels = input_ids, shifted inside, mean over the tokens);
  - torch.optim.AdamW (transformers' adamw_torch: betas 0.9/0.999, eps 1e-8, no weight
    decay), gradient norm clipped to 1.0, constant learning rate;
  - gradient checkpointing only when asked (then use_reentrant=False, inputs requiring grads).
A plain loop rather than transformers.Trainer: the Trainer's own per-step work (callbacks,
logging) is small next to a step and would only blur the timing.

On the CPU (bench_train.sh --smoke) everything stays fp32, with no autocast, so the first
step's loss can be held against llfc's CPU executor, which computes in fp32.

The result JSON, rewritten after every step ("running" until the end):
{"status": "ok"|"oom"|"error"|"running", "message", "attention", "step_s": [...],
"losses": [...], "max_reserved_mib", "max_allocated_mib", "trainable", "versions": {...}}.
"""
import argparse
import json
import math
import os
import sys
import time


def versions():
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "flash_attn"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # absent or broken: say so, it decides the attention below
            out[name] = None
    return out


def best_attention(device):
    """(attn_implementation, FlashAttention implementation activated inside sdpa or None):
    flash_attention_2 when its package imports, else PyTorch's sdpa, with FA3 switched on in
    it where this PyTorch has that registered (torch.nn.attention, PyTorch 2.9 and later)."""
    if device != "cuda":
        return "sdpa", None
    try:
        import flash_attn  # noqa: F401
        return "flash_attention_2", None
    except Exception:
        pass
    try:
        from torch.nn import attention as ta
        if "FA3" in list(ta.list_flash_attention_impls()):  # Hopper's (FA4 is Blackwell's)
            ta.activate_flash_attention_impl("FA3")
            return "sdpa", "FA3"
    except Exception:  # an older PyTorch, or the impl would not load: sdpa as it comes
        pass
    return "sdpa", None


def write(path, result):
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)


def is_oom(e):
    import torch
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# --- the measured bf16 (or CPU fp32) matrix-product peak

def cmd_peak(a):
    """Median FLOP/s of torch.matmul over large random matrices (never zeros: they run faster
    than real data), after a warm-up long enough for an idle GPU's clocks to rise (a product
    is ~1.5 ms on an H100; an idle one starts at a fraction of its clock)."""
    import torch
    dev = a.device
    n, dtype = (8192, torch.bfloat16) if dev == "cuda" else (1024, torch.float32)
    torch.manual_seed(0)
    xs = [(torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype))
          for _ in range(3)]  # rotate inputs so no product finds the last one's in the cache
    t_end = time.perf_counter() + (2.0 if dev == "cuda" else 0.2)
    i = 0
    while time.perf_counter() < t_end:
        torch.matmul(*xs[i % 3])
        i += 1
        if dev == "cuda" and i % 50 == 0:
            torch.cuda.synchronize()
    times = []
    for i in range(a.reps):
        x, y = xs[i % len(xs)]
        if dev == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            torch.matmul(x, y)
            t1.record()
            t1.synchronize()
            dt = t0.elapsed_time(t1) / 1e3
        else:
            t = time.perf_counter()
            torch.matmul(x, y)
            dt = time.perf_counter() - t
        times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    res = {"status": "ok", "n": n, "dtype": str(dtype).replace("torch.", ""), "reps": a.reps,
           "flops": 2.0 * n ** 3 / med, "versions": versions()}
    if dev == "cuda":
        p = torch.cuda.get_device_properties(0)
        res["device"] = {"name": p.name, "sms": p.multi_processor_count,
                         "memory_mib": p.total_memory / 2 ** 20}
    else:
        res["device"] = {"name": "cpu (%d threads)" % torch.get_num_threads()}
    write(a.out, res)
    print("peak: %s %dx%dx%d matmul, median of %d: %.1f TFLOP/s"
          % (res["dtype"], n, n, n, a.reps, res["flops"] / 1e12))


# --- one training run

def load_blocks(a):
    """Rows a.batch * a.steps of the int32 blocks file bench_train.py staged from llfc
    preview (row r = the trainer's row r: the trainer runs with disable_shuffling)."""
    import numpy as np
    need = a.batch * a.steps
    if need > a.rows:
        raise ValueError("%d steps x %d rows need %d rows; the data has %d" % (a.steps, a.batch, need, a.rows))
    blocks = np.fromfile(a.blocks, dtype="<i4", count=a.rows * a.row_len)
    return blocks.reshape(a.rows, a.row_len)[:need]


def build_model(a, attn):
    import torch
    from transformers import AutoModelForCausalLM
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    kw = {"attn_implementation": attn, "device_map": {"": a.device}}  # straight onto the device
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, **kw)
    except TypeError:  # transformers 4.x spells it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, **kw)
    model.config.use_cache = False
    if a.method == "lora":
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=a.lora_rank, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                         target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def cmd_train(a):
    import torch
    res = {"status": "running", "message": "", "versions": versions(), "step_s": [], "losses": []}
    attn, impl = best_attention(a.device)
    res["attention"] = attn + (" (%s)" % impl if impl else "")
    print("hf: attention %s, %s, %s on %s" % (res["attention"], a.method, "bf16 autocast" if a.device == "cuda"
                                                 else "fp32", a.device), flush=True)
    try:
        blocks = torch.from_numpy(load_blocks(a)).long()
        if a.device == "cuda" and a.method == "full" and a.params:
            # Full fine-tuning's fp32 weights, gradients and AdamW moments (16 bytes a weight)
            # past the whole GPU cannot fit whatever the activations: say so now instead of
            # spending a minute loading 16 GB before the allocator says the same.
            need, have = 16 * a.params, torch.cuda.get_device_properties(0).total_memory
            if need > have:
                res.update(status="oom", message="out of memory (not tried: fp32 weights, gradients and "
                           "AdamW states alone need %.0f GiB, the GPU has %.0f GiB)" % (need / 2 ** 30, have / 2 ** 30))
                print("hf: " + res["message"], flush=True)
                return res
        model = build_model(a, attn)
        for p in model.parameters():  # LLaMA-Factory: trainable weights in fp32
            if p.requires_grad:
                p.data = p.data.float()
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        res["trainable"] = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for step in range(a.steps):
            t = time.perf_counter()  # the batch's upload counts, as it does in llfc's step
            x = blocks[step * a.batch:(step + 1) * a.batch].to(a.device)
            with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.device == "cuda"):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            lv = loss.item()  # waits for the step, like llfc's trainer reading its loss back
            if a.device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            res["step_s"].append(dt)
            res["losses"].append(lv)
            print("hf: step %d/%d | loss %.4f | %.0f tok/s" % (step + 1, a.steps, lv, x.numel() / dt), flush=True)
            write(a.out, res)  # after every step: a run stopped by the driver's timeout keeps them
            if not math.isfinite(lv):
                res.update(status="error", message="step %d: the loss is %g" % (step + 1, lv))
                return res
        res["status"] = "ok"
    except Exception as e:  # out of memory is a result; anything else is reported, not raised
        res["status"] = "oom" if is_oom(e) else "error"
        res["message"] = ("out of memory: " if res["status"] == "oom" else "") + str(e).splitlines()[0][:300]
        print("hf: %s: %s" % (res["status"], e), flush=True)
    finally:
        if a.device == "cuda" and torch.cuda.is_available():
            res["max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2 ** 20
            res["max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peak")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--blocks", required=True)
    t.add_argument("--rows", type=int, required=True)
    t.add_argument("--row-len", type=int, required=True)
    t.add_argument("--batch", type=int, required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--method", required=True, choices=["lora", "full"])
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--lora-rank", type=int, default=16)
    t.add_argument("--lora-alpha", type=int, default=32)
    t.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--params", type=int, default=0, help="the model's weights (full: refuse what cannot fit)")
    t.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    t.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "peak":
        return cmd_peak(a)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    res = cmd_train(a)
    write(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
