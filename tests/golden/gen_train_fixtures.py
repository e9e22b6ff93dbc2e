#!/usr/bin/env python3
"""gen_train_fixtures.py - oracles for the trainer's modules, from the libraries LLaMA-Factory runs.

Writes tests/fixtures/train/*.json (small; committed, so CI needs none of this):
  optim.json     torch.optim.AdamW + torch.nn.utils.clip_grad_norm_ over a few steps
  schedule.json  transformers.get_scheduler factors, Trainer step counts, warmup steps
  smooth.json    llamafactory.extras.ploting.smooth
  decay.json     Trainer.get_decay_parameter_names and LLaMA-Factory's LoRA+ groups on real
                 module names (a PEFT-wrapped tiny Llama)
  trainer_files.json  what a real (tiny, CPU) transformers Trainer run wrote: trainer_state.json
                 (final and in checkpoint-4), train_results.json, all_results.json, the
                 checkpoints save_total_limit kept, log_metrics' console table; LLaMA-Factory's
                 LogCallback lines (trainer_log.jsonl) for fixed inputs with its clock replaced;
                 Python's repr() and round() of some floats
and tests/fixtures/peft/stories260k_qv: a LoRA adapter PEFT saved for ../shared's stories260K
(r 4, alpha 8, q_proj and v_proj, lora_B made non-zero).

Needs: pip install torch transformers peft llamafactory==0.9.5 (made with torch 2.15,
transformers 5.6.0, peft 0.18.1). Run from the repo root:
    LLFC_SHARED=../shared python3 tests/golden/gen_train_fixtures.py
Floats are written with repr() of the float32 value, so C reads back the exact bits.
"""
import json
import math
import os
import types

import torch

OUT = "tests/fixtures/train"


def f32list(t):
    return [float(x) for x in t.detach().reshape(-1).to(torch.float32).tolist()]


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(OUT, name))


# --- AdamW and clipping -------------------------------------------------------------------
def gen_optim():
    torch.manual_seed(1234)
    cases = []
    # (lr, betas, eps, wd, max_norm, per-param (n, decay, lr_scale))
    for lr, b1, b2, eps, wd, max_norm, grad_scale in [
        (1e-3, 0.9, 0.999, 1e-8, 0.01, 1.0, 1.0),     # clipping active (norm > 1)
        (5e-2, 0.8, 0.95, 1e-6, 0.1, 100.0, 0.01),    # clipping inactive, tiny grads
        (2e-4, 0.9, 0.999, 1e-8, 0.0, 0.0, 3.0),      # no clipping at all, no decay
    ]:
        shapes = [(7, True, 1.0), (5, False, 1.0), (6, True, 16.0), (3, False, 16.0)]
        params = [torch.nn.Parameter(torch.randn(n) * 0.5) for n, _, _ in shapes]
        init = [f32list(p) for p in params]
        groups = {}
        for p, (n, decay, scale) in zip(params, shapes):
            key = (decay, scale)
            groups.setdefault(key, []).append(p)
        opt = torch.optim.AdamW(
            [dict(params=ps, lr=lr * scale, weight_decay=(wd if decay else 0.0))
             for (decay, scale), ps in groups.items()],
            lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        steps = []
        for s in range(6):
            grads = [torch.randn(n) * grad_scale for n, _, _ in shapes]
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if max_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            else:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            clipped = [f32list(p.grad) for p in params]
            opt.step()
            steps.append(dict(
                grads=[f32list(g) for g in grads],
                grad_norm=float(norm),
                clipped=clipped,
                params=[f32list(p) for p in params],
                exp_avg=[f32list(opt.state[p]["exp_avg"]) for p in params],
                exp_avg_sq=[f32list(opt.state[p]["exp_avg_sq"]) for p in params]))
        cases.append(dict(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, max_norm=max_norm,
                          sizes=[n for n, _, _ in shapes], decay=[d for _, d, _ in shapes],
                          lr_scale=[s for _, _, s in shapes], init=init, steps=steps))
    dump("optim.json", dict(torch=torch.__version__, cases=cases))


# --- schedules and step counts --------------------------------------------------------------
def gen_schedule():
    import transformers
    from transformers import TrainingArguments, get_scheduler
    from transformers.trainer import Trainer

    T = 37
    scheds = []
    for name, kwargs in [("linear", {}), ("cosine", {}), ("cosine", {"num_cycles": 1.5}),
                         ("constant", {}), ("constant_with_warmup", {}),
                         ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
                         ("cosine_with_min_lr", {"min_lr": 1e-5})]:
        for warmup in [0, 1, 5, math.ceil(T * 0.1), 40]:
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.AdamW([p], lr=3e-4)
            sch = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=T,
                                scheduler_specific_kwargs=dict(kwargs))
            lrs = [sch.get_last_lr()[0]]
            for _ in range(T + 2):
                opt.step()
                sch.step()
                lrs.append(sch.get_last_lr()[0])
            scheds.append(dict(type=name, kwargs=kwargs, warmup=warmup, total=T, lr=3e-4, lrs=lrs))

    # Trainer.set_initial_training_values on a dataloader of N examples per rank
    counts = []
    stub = types.SimpleNamespace()
    for N, W, B, A, epochs, max_steps in [(100, 1, 8, 1, 3.0, -1), (100, 1, 8, 4, 3.0, -1),
                                          (101, 2, 4, 3, 1.5, -1), (7, 1, 8, 16, 2.0, -1),
                                          (1000, 4, 2, 8, 0.3, -1), (100, 1, 8, 4, 3.0, 50),
                                          (64, 1, 4, 2, 3.0, 7), (5, 1, 1, 1, 2.5, -1)]:
        per_rank = math.ceil(N / W)
        ds = list(range(per_rank))
        dl = torch.utils.data.DataLoader(ds, batch_size=B)
        args = types.SimpleNamespace(max_steps=max_steps, num_train_epochs=epochs,
                                     gradient_accumulation_steps=A)
        stub.get_total_train_batch_size = lambda a, B=B, A=A, W=W: B * A * W
        stub.get_sp_size = lambda: 1
        stub.num_examples = lambda d, N=N: N  # the prepared loader's dataset is the whole set
        r = Trainer.set_initial_training_values(stub, args, dl)
        counts.append(dict(N=N, world=W, batch=B, accum=A, epochs=epochs, max_steps=max_steps,
                           num_train_epochs=r[0], updates_per_epoch=r[1], total_steps=r[6],
                           num_train_samples=r[3]))

    warm = []
    for total, ws, wr in [(37, 0, 0.1), (37, 5, None), (37, 0.25, None), (100, 0, 0.03),
                          (10, 0, 0.0), (1000, 10, 0.05), (37, 2.7, None)]:
        kw = dict(output_dir="/tmp/llfc_gen_unused", warmup_steps=ws, report_to="none")
        if wr is not None:
            kw["warmup_ratio"] = wr
        ta = TrainingArguments(**kw)
        warm.append(dict(total=total, warmup_steps=ws, warmup_ratio=wr or 0.0,
                         result=ta.get_warmup_steps(total)))
    dump("schedule.json", dict(transformers=transformers.__version__, schedules=scheds,
                               counts=counts, warmup=warm))


# --- LLaMA-Factory's smoothing ---------------------------------------------------------------
def gen_smooth():
    from llamafactory.extras.ploting import smooth
    g = torch.Generator().manual_seed(7)
    series = []
    for n in [1, 2, 10, 37, 200]:
        xs = [float(3.0 * math.exp(-i / 30) + 0.2 * torch.rand(1, generator=g).item()) for i in range(n)]
        series.append(dict(raw=xs, smooth=smooth(xs)))
    dump("smooth.json", dict(series=series))


# --- decay and LoRA+ rules on real parameter names ----------------------------------------
def gen_decay():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM
    from transformers.trainer import Trainer
    from peft import LoraConfig, get_peft_model
    from llamafactory.train.trainer_utils import _get_decay_parameter_names

    out = []
    for model in [
        LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, attention_bias=True)),
        Qwen3ForCausalLM(Qwen3Config(vocab_size=32, hidden_size=16, intermediate_size=24,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, head_dim=8)),
    ]:
        full = set(Trainer.get_decay_parameter_names(None, model))
        names = [n for n, _ in model.named_parameters()]
        for n in names:
            out.append(dict(name=n, decay=n in full))
        peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                modules_to_save=["lm_head"]))
        full = set(Trainer.get_decay_parameter_names(None, peft))
        lf = set(_get_decay_parameter_names(peft))
        for n, p in peft.named_parameters():
            out.append(dict(name=n, decay=n in full, loraplus_decay=n in lf, ndim=p.ndim,
                            loraplus_b=("lora_B" in n or p.ndim == 1)))
    dump("decay.json", dict(names=out))


# --- trainer_state.json, *_results.json, trainer_log.jsonl from a real (tiny) run -------------
def gen_trainer_files():
    import shutil
    import tempfile
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
    import llamafactory.train.callbacks as lfcb

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1))
    rows = [dict(input_ids=torch.randint(0, 64, (8,)), labels=torch.randint(0, 64, (8,)))
            for _ in range(10)]
    tmp = tempfile.mkdtemp(prefix="llfc_gen_")
    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                             num_train_epochs=2, logging_steps=1, save_steps=2, learning_rate=1e-3,
                             lr_scheduler_type="cosine", warmup_steps=1, report_to="none",
                             use_cpu=True, save_total_limit=2, seed=3)
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    res = trainer.train()
    trainer.save_metrics("train", res.metrics)
    import contextlib
    import io
    from transformers.trainer_pt_utils import log_metrics
    printed = []
    for split, metrics in [("train", res.metrics),
                           ("eval", {"eval_loss": 3.612345678, "eval_runtime": 3725.5,
                                     "eval_samples_per_second": 12.5, "eval_steps_per_second": 1.0,
                                     "epoch": 2.0})]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            log_metrics(types.SimpleNamespace(is_world_process_zero=lambda: True), split, metrics)
        printed.append(dict(split=split, metrics=metrics, text=buf.getvalue()))
    trainer.save_state()
    files = {}
    for rel in ["trainer_state.json", "train_results.json", "all_results.json",
                "checkpoint-4/trainer_state.json"]:
        with open(os.path.join(tmp, rel)) as f:
            files[rel] = f.read()
    files["checkpoints"] = sorted(d for d in os.listdir(tmp) if d.startswith("checkpoint-"))
    shutil.rmtree(tmp)

    # LLaMA-Factory's LogCallback.on_log on fixed inputs, with its clock replaced
    clock = [1000.0]
    lfcb.time = types.SimpleNamespace(time=lambda: clock[0])
    lines = []
    out = tempfile.mkdtemp(prefix="llfc_gen_")
    cb = lfcb.LogCallback()
    a = types.SimpleNamespace(should_save=True, output_dir=out)
    st = types.SimpleNamespace(max_steps=37, global_step=0, log_history=[], num_input_tokens_seen=0)
    cb.on_train_begin(a, st, None)
    cases = []
    for step, entry, tokens, dt in [
        (1, {"loss": 2.5, "grad_norm": 1.25, "learning_rate": 1e-05, "epoch": 0.027, "step": 1}, 0, 1.5),
        (5, {"loss": 2.123456789, "grad_norm": 0.9, "learning_rate": 5e-05, "epoch": 0.13513513513513514, "step": 5}, 4096, 7.25),
        (10, {"eval_loss": 1.75, "eval_runtime": 0.5, "epoch": 0.27, "step": 10}, 8192, 13.0),
        (37, {"train_runtime": 4000.1, "train_loss": 1.5, "epoch": 1.0, "step": 37}, 30000, 90061.0),
    ]:
        clock[0] = 1000.0 + dt
        st.global_step = step
        st.log_history.append(entry)
        st.num_input_tokens_seen = tokens
        cb.on_log(a, st, None)
        cases.append(dict(step=step, entry=entry, tokens=tokens, elapsed=dt))
    cb.on_train_end(a, st, None)
    with open(os.path.join(out, "trainer_log.jsonl")) as f:
        jsonl = f.read()
    shutil.rmtree(out)

    reprs = [(v.hex(), repr(v)) for v in [0.0, -0.0, 1.0, 0.1, 1e-05, 1.5e-05, 0.0001, 123456.789,
                                            1e16, 1e15, 9999999999999998.0, 2.5e-310, 1.7976931348623157e308,
                                            5e-324, 0.30000000000000004, 3.14159, -2.0, 100.0, 1e22,
                                            1.2345678901234567e-7, 2 / 3, 4000.1, 0.027]]
    rounds = [(v.hex(), n, repr(round(v, n))) for v, n in [(2.675, 2), (0.125, 2), (37.5, 2),
                                                           (13.513513513513514, 2), (1234.56789, 2),
                                                           (0.005, 2), (1e-7, 4), (2.5, 0)]]
    dump("trainer_files.json", dict(transformers=transformers.__version__, files=files, printed=printed,
                                    lf_cases=cases, lf_jsonl=jsonl, reprs=reprs, rounds=rounds))


# --- a PEFT-made adapter for stories260K (tests/fixtures/peft/stories260k_qv) ------------------
def gen_peft_adapter():
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    shared = os.environ.get("LLFC_SHARED", "../shared")
    model = AutoModelForCausalLM.from_pretrained(os.path.join(shared, "models/stories260K/hf"))
    torch.manual_seed(5)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                     task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    with torch.no_grad():  # PEFT starts B at zero: make it non-zero so equality means something
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.5)
    pm.peft_config["default"].base_model_name_or_path = "stories260K/hf"
    out = "tests/fixtures/peft/stories260k_qv"
    pm.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))
    print("wrote", out)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gen_optim()
    gen_schedule()
    gen_smooth()
    gen_decay()
    gen_trainer_files()
    gen_peft_adapter()
