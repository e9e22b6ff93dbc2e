#!/usr/bin/env python3
"""bench_train.py - llfc's trainers against transformers + PEFT on the same GPU, same shapes,
same token blocks: tokens/s, MFU and peak device memory, and the ratios (issue 7, item 4).

    bench_train.py stage DIR [--smoke] [--shapes a,b] [--gradient-checkpointing] [--steps N]
    bench_train.py run DIR|DIR.tgz [--only a,b] [--methods lora,full] [--steps N] [--warmup W]
                       [--timeout S] [--deadline S] [--keep-models]
    bench_train.py table RESULTS.json [MORE.json ...]

(tests/bench/bench_train.sh is the entry point: it builds llfc and calls this.) Only the
standard library here: this process never touches the GPU, so nvidia-smi sees each run alone;
the reference side is bench_train_hf.py, one process per run.

stage (here, no GPU needed) writes everything a GPU machine needs into DIR, and DIR.tgz to
carry there (the device tool carries at most 64 MiB and nothing from ../shared):
  llfc                       the compiler, to make the weights there (`llfc init-model`: an 8B
                             model is 16 GB, so it is made on the GPU machine, not carried)
  trainers/SHAPE-METHOD      a trainer per shape and method, compiled against a config-only
                             model folder (init-model --no-weights: compiling reads config.json)
  recipes/SHAPE-METHOD.yaml  what each trainer was compiled from
  tokenizers/NAME            tokenizer.json and tokenizer_config.json (../shared/tokenizers)
  data/                      LLaMA-Factory's c4_demo.jsonl, repeated, and its dataset_info.json
  blocks/NAME.i32            the packed rows as the trainer sees them (`llfc preview --json`),
                             int32, row after row: the HF side trains on exactly these
  manifest.json              shapes, settings, trainers, blocks; run reads only this
run (on the GPU machine) makes each shape's weights, then for each shape and method runs the
llfc trainer and then bench_train_hf.py, each alone on the GPU, and prints the table; it also
writes DIR/results.json and DIR/table.txt (and copies them with the logs to $OUT when set).

Like for like, by construction:
  - the same weights: one init-model folder (seeded N(0, 0.02), bf16) loaded by both;
  - the same rows in the same order: stage pt with packing (LLaMA-Factory's blocks of
    cutoff_len - 1 = 2047 tokens, labels = input_ids), the trainer with disable_shuffling,
    the HF side reading the staged blocks; after each llfc run its token cache is compared
    with the blocks ("same rows" in results.json);
  - the same step: micro-batch B, no accumulation, AdamW (0.9, 0.999, 1e-8, no decay),
    clipping at 1.0, constant learning rate, LoRA rank 16 / alpha 32 / dropout 0 on every
    linear layer of the decoder (not lm_head), bf16 compute with fp32 trained weights;
    gradient checkpointing on both sides or neither (a stage option, compiled into trainers).

Measured the same way on both sides:
  - tokens/s = tokens of the measured steps / their summed wall time, over the steps after
    the first --warmup (each side times each whole step: batch upload, forward, backward,
    clipping, AdamW, loss read back). llfc's from its progress lines' tok/s (one a step with
    logging_steps 1), HF's from its own per-step clock.
  - peak device memory = the highest nvidia-smi memory.used, polled every 100 ms while the
    run lasts, minus memory.used just before it started (CUDA context included on both
    sides). Second figures: torch.cuda.max_memory_reserved for HF, the trainer's planned
    device memory for llfc. On the CPU (--smoke): each process's peak RSS (wait4).
  - MFU = model FLOPs per token x tokens/s / peak, the peak measured in the same run: the
    median of 50 torch.matmul of random 8192x8192 bf16 matrices after 2 s of warm-up
    (bench_train_hf.py peak).

Full fine-tuning "where memory allows": both sides try, and out of memory is a result (OOM in
the table), not a crash. llfc's trainer refuses a plan larger than the free GPU memory before
it allocates anything; the HF side is not started when fp32 weights, gradients and AdamW's
moments alone (16 bytes a weight) exceed the whole GPU (Llama-3-8B on 80 GB), and otherwise
its CUDA out-of-memory error is caught. Gradient checkpointing is off unless staged with
--gradient-checkpointing (then on both sides, and the table says so).

Model FLOPs per token (the PaLM appendix's count; recomputation is never counted), with N the
weights of every matrix product (each layer's q, k, v, o, gate, up, down and the lm_head,
tied or not; embedding lookups, norms and biases left out), N_lora = R * (in + out) summed
over the adapted products, and T the row length:
    full:  6 N + 6 L T NH HD       (2N forward, 4N backward: input and weight gradients)
    lora:  4 N + 6 N_lora + 6 L T NH HD   (frozen weights: forward and input gradients only)
6 L T NH HD is causal attention: QK^T and PV are 4 T NH HD a token a layer over all T keys,
halved because each token sees the ones before it, times 3 for the backward pass. llfc's
plan counts the same (its FLOPs per step are kept in results.json beside this formula's).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HF_SCRIPT = os.path.join(HERE, "bench_train_hf.py")

# --- the shapes (from each model's config.json on the Hugging Face hub)

# batch: rows of cutoff_len per micro-batch, chosen so the HF side fits an 80 GB H100 with
# LoRA and no recomputation (the 151936-token vocabulary's fp32 logits dominate the small one)
SHAPES = {
    "qwen2.5-0.5b": dict(family="qwen2", hidden=896, layers=24, heads=14, kv_heads=2, head_dim=64,
                         intermediate=4864, vocab=151936, tie=True, tokenizer="qwen3", template="qwen3",
                         batch=4),
    "qwen3-4b": dict(family="qwen3", hidden=2560, layers=36, heads=32, kv_heads=8, head_dim=128,
                     intermediate=9728, vocab=151936, tie=True, tokenizer="qwen3", template="qwen3", batch=2),
    "llama3-8b": dict(family="llama", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                      intermediate=14336, vocab=128256, tie=False, tokenizer="llama3", template="default",
                      batch=1),
}
# Templates: pt rows use a template only for the eos appended to each text (LF: llama3's is
# <|end_of_text|>, else the tokenizer's). For Llama "default" gives that same eos, whereas
# "llama3" would also add <|eom_id|>, which this Llama 3 tokenizer lacks, as token 128256
# (LF resizes the embeddings for it; llfc refuses), for nothing that pt rows use.

# --smoke: the same families and tokenizers, tiny, on the CPU executor and torch on the CPU
SMOKE_SHAPES = {
    "tiny-qwen2": dict(SHAPES["qwen2.5-0.5b"], hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16,
                       intermediate=128, batch=2),
    "tiny-qwen3": dict(SHAPES["qwen3-4b"], hidden=64, layers=2, heads=4, kv_heads=2, head_dim=32,
                       intermediate=128, batch=2),
    "tiny-llama3": dict(SHAPES["llama3-8b"], hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16,
                        intermediate=128, batch=2),
}
METHODS = ("lora", "full")
LR = {"lora": 1.0e-4, "full": 1.0e-5}
LORA_RANK, LORA_ALPHA = 16, 32
# the targets (one H100)
TARGET_LORA_SPEED, TARGET_LORA_MEMORY, TARGET_FULL_MFU = 3.0, 0.5, 0.45


def say(msg):
    print("bench: " + msg, flush=True)


def die(msg):
    sys.exit("bench_train: " + msg)


# --- model FLOPs (the formula in the header)

def linears(s):
    """(in, out) of each matrix product of one decoder layer."""
    d, q, kv, i = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], s["intermediate"]
    return [(d, q), (d, kv), (d, kv), (q, d), (d, i), (d, i), (i, d)]


def flops_per_token(s, method, row_len):
    n = s["layers"] * sum(a * b for a, b in linears(s)) + s["vocab"] * s["hidden"]
    attn = 6 * s["layers"] * row_len * s["heads"] * s["head_dim"]
    if method == "full":
        return 6 * n + attn
    n_lora = s["layers"] * sum(LORA_RANK * (a + b) for a, b in linears(s))
    return 4 * n + 6 * n_lora + attn


def param_count(s):
    """All weights (norms included, biases left out): what full fine-tuning keeps states of."""
    d, L = s["hidden"], s["layers"]
    n = L * (sum(a * b for a, b in linears(s)) + 2 * d) + d + s["vocab"] * d * (1 if s["tie"] else 2)
    if s["family"] == "qwen3":
        n += L * 2 * s["head_dim"]  # q/k norms
    return n


# --- processes

class Failed(Exception):
    pass


def run_cmd(argv, log=None):
    """Run to the end; return its stdout (stderr kept apart: it would break JSON lines), both
    to log when given; raise Failed with their tail on failure."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if log:
        with open(log, "a") as f:
            f.write("$ " + " ".join(argv) + "\n" + p.stderr + (p.stdout if len(p.stdout) < 100000 else ""))
    if p.returncode != 0:
        raise Failed("%s failed (exit %d):\n%s" % (" ".join(argv), p.returncode, (p.stdout + p.stderr)[-3000:]))
    return p.stdout


class GpuMemory:
    """The peak of nvidia-smi's memory.used while a run lasts, minus what was used before."""

    def __init__(self):
        q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        # the run before may still be handing its memory back: wait until the figure stops falling
        self.base = float(subprocess.check_output(q, text=True).split()[0])
        for _ in range(20):
            time.sleep(0.25)
            now = float(subprocess.check_output(q, text=True).split()[0])
            if now >= self.base:
                break
            self.base = now
        self.peak = self.base
        self.proc = subprocess.Popen(q + ["-lms", "100"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.peak = max(self.peak, float(line.split()[0]))
            except (ValueError, IndexError):
                pass

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.thread.join(timeout=5)
        return self.peak - self.base


def reap(pid, timeout):
    """wait4 for pid up to timeout seconds (None: for ever): (exit status, peak RSS MiB), or
    None while it still runs. wait4 gives this child's own peak RSS (getrusage's is the
    largest of all children so far)."""
    end = None if timeout is None else time.time() + timeout
    while True:
        got, status, ru = os.wait4(pid, 0 if end is None else os.WNOHANG)
        if got:
            return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 1024.0
        if time.time() >= end:
            return None
        time.sleep(0.05)


def watch(argv, log, timeout, stop_after=None, env=None):
    """Run argv with its output (stdout and stderr) into log, line by line as it comes, each
    line handed to stop_after(line): when that returns True the process has done all we time
    and is ended (llfc's trainer would go on to write its outputs: 16 GB of fp32 for Qwen3-4B
    full, which the HF side does not do either). Returns (exit status, or None when we ended
    it; whether it ran past timeout; its peak RSS in MiB)."""
    f = open(log, "a")
    f.write("$ " + " ".join(argv) + "\n")
    f.flush()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    done, stopped = threading.Event(), threading.Event()

    def pump():
        for line in p.stdout:
            f.write(line)
            f.flush()
            if stop_after and not stopped.is_set() and stop_after(line):
                stopped.set()
                done.set()
        done.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    timed_out = not done.wait(timeout)
    got = None if timed_out else reap(p.pid, 0.5 if stopped.is_set() else 30)
    ended = got is None
    if ended:  # past its time, or done with what we measure: its whole process group goes
        os.killpg(p.pid, signal.SIGTERM)
        got = reap(p.pid, 10)
        if got is None:
            os.killpg(p.pid, signal.SIGKILL)
            got = reap(p.pid, None)
    p.returncode = got[0]  # reaped here: Popen must not wait for it again
    t.join(timeout=5)
    f.close()
    return (None if ended else got[0]), timed_out, got[1]


# --- stage

def recipe_text(name, s, method, model_dir, data_dir, steps, cutoff, gc, device):
    lora = ("lora_rank: %d\nlora_alpha: %d\nlora_dropout: 0.0\nlora_target: all\n" % (LORA_RANK, LORA_ALPHA)
            if method == "lora" else "")
    return f"""# bench_train: {name}, {method} (written by tests/bench/bench_train.py stage)
model_name_or_path: {model_dir}
stage: pt
do_train: true
finetuning_type: {method}
{lora}dataset: c4_bench
dataset_dir: {data_dir}
template: {s['template']}
cutoff_len: {cutoff}
packing: true
disable_shuffling: true
output_dir: {data_dir}/../runs/{name}-{method}/llfc
overwrite_output_dir: true
logging_steps: 1
save_strategy: "no"
per_device_train_batch_size: {s['batch']}
gradient_accumulation_steps: 1
learning_rate: {LR[method]}
lr_scheduler_type: constant
weight_decay: 0.0
max_grad_norm: 1.0
max_steps: {steps}
bf16: true
gradient_checkpointing: {'true' if gc else 'false'}
device: {device}
seed: 42
"""


def init_model_args(s, tok_dir, out):
    a = ["init-model", "--family", s["family"], "--hidden", str(s["hidden"]), "--layers", str(s["layers"]),
         "--heads", str(s["heads"]), "--kv-heads", str(s["kv_heads"]), "--head-dim", str(s["head_dim"]),
         "--intermediate", str(s["intermediate"]), "--vocab", str(s["vocab"]),
         "--tie-embeddings", "true" if s["tie"] else "false", "--dtype", "bf16", "--seed", "0",
         "--tokenizer", tok_dir, "-o", out]
    return a


def write_blocks(preview_out, path):
    """`llfc preview --json` lines -> int32 rows; (rows, row length)."""
    import array
    rows, n = 0, None
    with open(path, "wb") as f:
        for line in preview_out.splitlines():
            if not line.startswith("{"):
                continue
            ids = json.loads(line)["input_ids"]
            if n is None:
                n = len(ids)
            if len(ids) != n:
                die("%s: rows of %d and %d tokens; packed pt rows should all be full" % (path, n, len(ids)))
            a = array.array("i", ids)
            if sys.byteorder != "little":
                a.byteswap()
            a.tofile(f)
            rows += 1
    return rows, n


def cmd_stage(a):
    out = os.path.abspath(a.dir)
    shared = os.path.abspath(os.environ.get("LLFC_SHARED") or os.path.join(ROOT, "..", "shared"))
    llfc = os.path.abspath(a.llfc)
    shapes = SMOKE_SHAPES if a.smoke else SHAPES
    names = a.shapes.split(",") if a.shapes else list(shapes)
    for n in names:
        if n not in shapes:
            die("unknown shape %s; these are known: %s" % (n, ", ".join(shapes)))
    cutoff = a.cutoff or (128 if a.smoke else 2048)
    steps = a.steps or (4 if a.smoke else 10)
    device = "cpu" if a.smoke else "cuda"
    if os.path.exists(out):
        if os.listdir(out) and not os.path.exists(os.path.join(out, "manifest.json")):
            die("%s is not empty and holds no manifest.json: not a staged folder, left as it is" % out)
        shutil.rmtree(out)
    for sub in ("trainers", "recipes", "tokenizers", "data", "blocks", "models", "logs"):
        os.makedirs(os.path.join(out, sub))
    with open(os.path.join(out, "manifest.json"), "w") as f:  # marks the folder ours, even half-staged
        json.dump({"incomplete": True}, f)
    log = os.path.join(out, "logs", "stage.log")
    t0 = time.time()

    shutil.copy2(llfc, os.path.join(out, "llfc"))
    toks = sorted({shapes[n]["tokenizer"] for n in names})
    for tk in toks:
        os.makedirs(os.path.join(out, "tokenizers", tk))
        for f in ("tokenizer.json", "tokenizer_config.json"):
            src = os.path.join(shared, "tokenizers", tk, f)
            if not os.path.exists(src):
                die("%s is missing: set LLFC_SHARED to the folder of the test assets" % src)
            shutil.copy2(src, os.path.join(out, "tokenizers", tk, f))
    # pretraining text: LLaMA-Factory's c4_demo (300 web pages, ~160k tokens), repeated so
    # that the default steps never run out of rows (the HF side does not wrap around)
    c4 = os.path.join(shared, "data", "llamafactory", "c4_demo.jsonl")
    if not os.path.exists(c4):
        die("%s is missing: set LLFC_SHARED to the folder of the test assets" % c4)
    data = os.path.join(out, "data")
    with open(c4, "rb") as f:
        text = f.read()
    with open(os.path.join(data, "c4_bench.jsonl"), "wb") as f:
        f.write(text * a.repeat)
    with open(os.path.join(data, "dataset_info.json"), "w") as f:
        json.dump({"c4_bench": {"file_name": "c4_bench.jsonl", "columns": {"prompt": "text"}}}, f, indent=2)

    man = {"version": 1, "smoke": a.smoke, "device": device, "cutoff_len": cutoff, "steps": steps,
           "gradient_checkpointing": a.gradient_checkpointing, "lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA,
           "lr": LR, "shapes": {}, "blocks": {}, "runs": []}
    for n in names:
        s = shapes[n]
        mdir = os.path.join(out, "models", n)
        run_cmd([llfc] + init_model_args(s, os.path.join(out, "tokenizers", s["tokenizer"]), mdir) +
                ["--no-weights"], log)
        man["shapes"][n] = dict(s, params=param_count(s))
        for m in a.methods.split(","):
            rid = "%s-%s" % (n, m)
            rpath = os.path.join(out, "recipes", rid + ".yaml")
            with open(rpath, "w") as f:
                f.write(recipe_text(n, s, m, mdir, data, steps, cutoff, a.gradient_checkpointing, device))
            trainer = os.path.join(out, "trainers", rid)
            run_cmd([llfc, rpath, "-o", trainer, "--arch", a.arch], log)
            plan = run_cmd([llfc, rpath, "--plan"])
            fl = re.search(r"FLOPs per step: ([0-9.e+]+)", plan)
            man["runs"].append({"id": rid, "shape": n, "method": m, "batch": s["batch"],
                                "trainer": "trainers/" + rid, "recipe": "recipes/" + rid + ".yaml",
                                "llfc_plan_flops_per_step": float(fl.group(1)) if fl else None})
            say("compiled %s (--arch %s)" % (rid, a.arch))
        # the rows, from the encoder every trainer of this tokenizer carries
        tk = s["tokenizer"]
        if tk not in man["blocks"]:
            path = os.path.join(out, "blocks", tk + ".i32")
            prev = run_cmd([llfc, "preview", os.path.join(out, "recipes", man["runs"][-1]["id"] + ".yaml"),
                            "-n", "100000000", "--json"])
            rows, row_len = write_blocks(prev, path)
            man["blocks"][tk] = {"file": "blocks/%s.i32" % tk, "rows": rows, "row_len": row_len,
                                 "template": s["template"]}
            say("blocks/%s.i32: %d rows of %d tokens (llfc preview)" % (tk, rows, row_len))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    # the folder to carry: everything but the config-only models (11 MB of tokenizer each)
    # and the logs; unpacked by `run DIR.tgz`
    tgz = out + ".tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for sub in ("manifest.json", "llfc", "trainers", "recipes", "tokenizers", "data", "blocks"):
            tf.add(os.path.join(out, sub), arcname=os.path.join(os.path.basename(out), sub))
    mib = os.path.getsize(tgz) / 2 ** 20
    say("staged %s in %.0f s; carry %s (%.1f MiB)" % (out, time.time() - t0, os.path.relpath(tgz, ROOT), mib))
    if mib > 40:
        say("warning: %.1f MiB is much of the 64 MiB the device tool carries with the working tree" % mib)


# --- run

def find_cublaslt(env):
    """The trainer loads cuBLASLt from the loader's path or /usr/local/cuda; when neither has
    it, PyTorch's pip wheel (nvidia-cublas) carries one: point LLFC_CUBLASLT at it."""
    if env.get("LLFC_CUBLASLT"):
        return
    home = env.get("CUDA_HOME", "/usr/local/cuda")
    for d in (home + "/lib64", "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"):
        for v in ("13", "12"):
            if os.path.exists("%s/libcublasLt.so.%s" % (d, v)):
                return
    try:
        path = subprocess.check_output([sys.executable, "-c",
                                        "import glob, os, site, sys\n"
                                        "for d in site.getsitepackages() + sys.path:\n"
                                        "    for p in sorted(glob.glob(os.path.join(d, 'nvidia', '*', 'lib', "
                                        "'libcublasLt.so.*'))): print(p)"], text=True).split()
    except (subprocess.CalledProcessError, OSError):
        path = []
    if path:
        env["LLFC_CUBLASLT"] = path[-1]
        say("cuBLASLt: LLFC_CUBLASLT=%s (from the Python packages)" % path[-1])


STEP_RE = re.compile(r"^step (\d+)/(\d+) .*?\| loss ([^ |]+)(?:.*?\| ([0-9.]+) tok/s)?")
OOM_RE = re.compile(r"out of memory|OUT_OF_MEMORY|MiB of GPU memory and [0-9.]+ MiB are free", re.I)


def llfc_run(d, man, r, steps, warmup, timeout, env, dev):
    """One trainer run: per-step tok/s and losses from its progress lines, peak memory."""
    rid, sh = r["id"], man["shapes"][r["shape"]]
    rdir = os.path.join(d, "runs", rid)
    shutil.rmtree(rdir, ignore_errors=True)
    os.makedirs(rdir)
    log = os.path.join(rdir, "llfc.log")
    argv = [os.path.join(d, r["trainer"]), "model_name_or_path=" + os.path.join(d, "models", r["shape"]),
            "dataset_dir=" + os.path.join(d, "data"), "output_dir=" + os.path.join(rdir, "llfc"),
            "max_steps=%d" % steps, "device=" + man["device"]]
    steps_seen, t_last = [], [time.time()]

    def on_line(line):
        m = STEP_RE.match(line)
        if m:
            now = time.time()
            tps = float(m.group(4)) if m.group(4) else None
            steps_seen.append({"loss": float(m.group(3)), "tok_s": tps, "arrived_s": now - t_last[0]})
            t_last[0] = now
            return int(m.group(1)) >= steps
        return False

    mem = GpuMemory() if dev == "cuda" else None
    t0 = time.time()
    rc, timed_out, rss = watch(argv, log, timeout, on_line, env)
    peak = mem.stop() if mem else rss
    text = open(log).read()
    res = {"status": "ok", "seconds": time.time() - t0, "peak_mib": peak, "losses": [s["loss"] for s in steps_seen]}
    pl = re.search(r"device memory: ([0-9.]+) MiB planned", text)
    res["planned_mib"] = float(pl.group(1)) if pl else None
    dv = re.search(r"^device: (.*)$", text, re.M)  # where it trained, in its own words
    res["device"] = dv.group(1) if dv else None
    tokens = r["batch"] * man["blocks"][sh["tokenizer"]]["row_len"]
    # a step's time: its tokens over the trainer's own tok/s for it (the arrival of its line
    # here when a line has no tok/s)
    res["step_s"] = [tokens / s["tok_s"] if s["tok_s"] else s["arrived_s"] for s in steps_seen]
    if timed_out and len(steps_seen) > warmup + 1:  # slow, not broken: time the steps it made
        res["note"] = "stopped by --timeout %.0f s after step %d of %d" % (timeout, len(steps_seen), steps)
    elif len(steps_seen) < steps:
        errs = [l for l in text.splitlines() if l.startswith("error") or "error:" in l]
        res["status"] = "timeout" if timed_out else "oom" if OOM_RE.search(text) else "error"
        msg = ("no step %d after %.0f s" % (len(steps_seen) + 1, timeout) if timed_out else
               errs[-1] if errs else text.strip().splitlines()[-1] if text.strip() else "exit %s" % rc)
        res["message"] = re.sub(r"^error: ", "", msg)[:300]
    elif rc not in (None, 0):
        res["status"], res["message"] = "error", "exit %d after the last step" % rc
    res["same_rows"] = compare_cache(os.path.join(rdir, "llfc", "tokenized", "train.llfctok"),
                                     os.path.join(d, man["blocks"][sh["tokenizer"]]["file"]),
                                     man["blocks"][sh["tokenizer"]]["row_len"])
    return res


def compare_cache(cache, blocks, row_len):
    """Whether the trainer's token cache (tokcache.h's layout) holds the staged rows, in order:
    the proof that both sides trained on the same blocks. None when it cannot be read."""
    import struct
    try:
        with open(cache, "rb") as f:
            c = f.read()
        with open(blocks, "rb") as f:
            b = f.read()
    except OSError:
        return None
    if c[:8] != b"LLFCTOK1":
        return None
    n_parts = struct.unpack_from("<I", c, 16)[0]
    n_rows, n_tokens = struct.unpack_from("<QQ", c, 120)
    hdr = 8 + 4 * 4 + 3 * 32 + 3 * 8 + 16 * 8 + 8
    if n_parts != 1 or n_rows * row_len * 4 != len(b) or n_tokens * 4 != len(b):
        return False
    off = hdr + (n_rows + 1) * 8
    return c[off:off + n_tokens * 4] == b


def hf_run(d, man, r, steps, warmup, timeout, dev, threads):
    rid, sh = r["id"], man["shapes"][r["shape"]]
    rdir = os.path.join(d, "runs", rid)
    blk = man["blocks"][sh["tokenizer"]]
    out = os.path.join(rdir, "hf.json")
    argv = [sys.executable, HF_SCRIPT, "train", "--model", os.path.join(d, "models", r["shape"]),
            "--blocks", os.path.join(d, blk["file"]), "--rows", str(blk["rows"]), "--row-len", str(blk["row_len"]),
            "--batch", str(r["batch"]), "--steps", str(steps), "--method", r["method"],
            "--lr", str(man["lr"][r["method"]]), "--lora-rank", str(man["lora_rank"]),
            "--lora-alpha", str(man["lora_alpha"]), "--device", dev, "--params", str(sh["params"]),
            "--threads", str(threads), "--out", out]
    if man["gradient_checkpointing"]:
        argv.append("--gradient-checkpointing")
    mem = GpuMemory() if dev == "cuda" else None
    t0 = time.time()
    rc, timed_out, rss = watch(argv, os.path.join(rdir, "hf.log"), timeout)
    peak = mem.stop() if mem else rss
    try:
        with open(out) as f:
            res = json.load(f)
    except (OSError, ValueError):
        tail = open(os.path.join(rdir, "hf.log")).read().strip().splitlines()
        res = {"status": "timeout" if timed_out else "error",
               "message": "no step after %.0f s" % timeout if timed_out else (tail[-1] if tail else "exit %s" % rc)}
    res["seconds"], res["peak_mib"] = time.time() - t0, peak
    if res.get("status") == "running":  # ended by the timeout (or killed) between steps
        n = len(res.get("step_s", []))
        if timed_out and n > warmup + 1:  # slow, not broken: time the steps it made
            res["status"], res["note"] = "ok", "stopped by --timeout %.0f s after step %d of %d" % (timeout, n, steps)
        else:
            res["status"] = "timeout" if timed_out else "error"
            res["message"] = ("no step %d after %.0f s" % (n + 1, timeout) if timed_out else
                              "ended after step %d (exit %s)" % (n, rc))
    return res


def throughput(res, tokens, warmup):
    """Tokens/s over the steps after warm-up; None when there are none."""
    t = res.get("step_s") or []
    if res.get("status") != "ok" or len(t) <= warmup:
        return None
    return tokens * (len(t) - warmup) / sum(t[warmup:])


def judge(entry):
    """The issue's targets for this row: (text, met or not or None when unmeasured)."""
    if entry["method"] == "lora":
        sp, mem = entry.get("speed_ratio"), entry.get("memory_ratio")
        goal = "tok/s >= %gx HF at <= %gx memory" % (TARGET_LORA_SPEED, TARGET_LORA_MEMORY)
        if sp is None or mem is None:
            return goal, None
        return goal, sp >= TARGET_LORA_SPEED and mem <= TARGET_LORA_MEMORY
    mfu = entry["llfc"].get("mfu")
    return "MFU >= %d%%" % (TARGET_FULL_MFU * 100), None if mfu is None else mfu >= TARGET_FULL_MFU


def evaluate(man, r, lres, hres, peak, warmup):
    sh = man["shapes"][r["shape"]]
    row_len = man["blocks"][sh["tokenizer"]]["row_len"]
    tokens = r["batch"] * row_len
    fpt = flops_per_token(sh, r["method"], row_len)
    e = {"shape": r["shape"], "method": r["method"], "batch": r["batch"], "row_len": row_len,
         "tokens_per_step": tokens, "warmup": warmup, "flops_per_token": fpt,
         "llfc_plan_flops_per_token": (r["llfc_plan_flops_per_step"] / tokens
                                       if r.get("llfc_plan_flops_per_step") else None),
         "gradient_checkpointing": man["gradient_checkpointing"], "peak_flops": peak, "llfc": lres, "hf": hres}
    for side in (lres, hres):
        side["tok_s"] = throughput(side, tokens, warmup)
        side["mfu"] = side["tok_s"] * fpt / peak if side["tok_s"] and peak else None
    ok = lres["tok_s"] and hres["tok_s"]
    e["speed_ratio"] = lres["tok_s"] / hres["tok_s"] if ok else None
    e["memory_ratio"] = (lres["peak_mib"] / hres["peak_mib"]
                         if ok and lres.get("peak_mib") and hres.get("peak_mib") else None)
    # the same weights and rows: step 1's loss agrees (to bf16 on a GPU); full fine-tuning's
    # later losses too (LoRA's drift apart a little: PEFT and llfc draw A differently)
    e["first_loss"] = [lres["losses"][0] if lres.get("losses") else None,
                       hres["losses"][0] if hres.get("losses") else None]
    e["last_loss"] = [lres["losses"][-1] if lres.get("losses") else None,
                      hres["losses"][-1] if hres.get("losses") else None]
    e["target"], e["target_met"] = judge(e)
    return e


def cmd_run(a):
    d = os.path.abspath(a.dir)
    if d.endswith(".tgz"):  # what stage wrote to carry: unpack it beside itself
        with tarfile.open(d) as tf:
            try:
                tf.extractall(os.path.dirname(d), filter="data")
            except TypeError:  # a Python before 3.11.4 has no filter
                tf.extractall(os.path.dirname(d))
        d = d[:-len(".tgz")]
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    dev = man["device"]
    steps = a.steps or man["steps"]
    warmup = a.warmup if a.warmup is not None else (1 if man["smoke"] else 3)
    if steps <= warmup:
        die("--steps %d leaves no step after %d warm-up steps" % (steps, warmup))
    deadline = a.deadline if a.deadline is not None else (540 if dev == "cuda" else 0)
    only = a.only.split(",") if a.only else list(man["shapes"])
    methods = a.methods.split(",")
    for n in only:
        if n not in man["shapes"]:
            die("unknown shape %s; staged: %s" % (n, ", ".join(man["shapes"])))
    for sub in ("runs", "logs", "models"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    env = dict(os.environ)
    t0 = time.time()
    if dev == "cuda":
        if not shutil.which("nvidia-smi"):
            die("no nvidia-smi: this manifest is for a GPU machine (stage --smoke for the CPU)")
        gpu = subprocess.check_output(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                       "--format=csv,noheader", "-i", "0"], text=True).strip()
        say("GPU: " + gpu)
        find_cublaslt(env)
    st = os.statvfs(d)
    say("disk: %.0f GiB free under %s" % (st.f_bavail * st.f_frsize / 2 ** 30, d))
    # the peak, measured here and now
    pk = os.path.join(d, "logs", "peak.json")
    try:
        run_cmd([sys.executable, HF_SCRIPT, "peak", "--device", dev, "--out", pk], os.path.join(d, "logs", "peak.log"))
    except Failed as e:
        die("the peak measurement failed, so nothing else would run:\n%s" % e)
    with open(pk) as f:
        peak = json.load(f)
    say("peak: %s matmul %s on %s; torch %s, transformers %s, peft %s, flash_attn %s"
        % (peak["dtype"], rate(peak["flops"]), peak["device"]["name"], peak["versions"]["torch"],
           peak["versions"]["transformers"], peak["versions"]["peft"], peak["versions"]["flash_attn"]))
    results = {"device": peak["device"], "versions": peak["versions"], "peak_flops": peak["flops"],
               "peak_matmul": {k: peak[k] for k in ("n", "dtype", "reps")}, "smoke": man["smoke"],
               "steps": steps, "warmup": warmup, "cutoff_len": man["cutoff_len"],
               "gradient_checkpointing": man["gradient_checkpointing"], "runs": []}
    threads = a.threads or 0
    for n in only:
        sh = man["shapes"][n]
        mdir = os.path.join(d, "models", n)
        runs = [r for r in man["runs"] if r["shape"] == n and r["method"] in methods]
        blk = man["blocks"][sh["tokenizer"]]
        if steps * sh["batch"] > blk["rows"]:
            die("%s: %d steps x %d rows need %d rows; the staged data has %d (stage with --repeat more)"
                % (n, steps, sh["batch"], steps * sh["batch"], blk["rows"]))
        # the weights (up to 16 GB: not started in the last 90 s before the deadline)
        broken = None
        have = os.path.isdir(mdir) and any(f.endswith(".safetensors") for f in os.listdir(mdir))
        if not have and not (deadline and deadline - (time.time() - t0) < 90):
            t = time.time()
            try:
                run_cmd([os.path.join(d, "llfc")] + init_model_args(sh, os.path.join(d, "tokenizers", sh["tokenizer"]),
                                                                     mdir), os.path.join(d, "logs", "init-model.log"))
                say("%s: random bf16 weights (llfc init-model) in %.0f s" % (n, time.time() - t))
            except Failed as e:
                broken = {"status": "error", "message": "llfc init-model: " + str(e).splitlines()[-1][:200]}
                say("%s: %s" % (n, e))
        for r in runs:
            left = deadline - (time.time() - t0) if deadline else a.timeout
            if broken:
                lres, hres = dict(broken), dict(broken)
            elif deadline and left < 30:
                lres = {"status": "not run", "message": "past --deadline %d s: run again with --only %s" % (deadline, n)}
                hres = dict(lres)
            else:
                say("%s: llfc ..." % r["id"])
                lres = llfc_run(d, man, r, steps, warmup, min(a.timeout, left), env, dev)
                left = deadline - (time.time() - t0) if deadline else a.timeout
                if deadline and left < 30:
                    hres = {"status": "not run", "message": "past --deadline %d s" % deadline}
                else:
                    say("%s: transformers + PEFT ..." % r["id"])
                    hres = hf_run(d, man, r, steps, warmup, min(a.timeout, left), dev, threads)
            e = evaluate(man, r, lres, hres, peak["flops"], warmup)
            results["runs"].append(e)
            say("%s: llfc %s, HF %s" % (r["id"], brief(lres), brief(hres)))
            publish(d, results)  # after every run: a command killed later still sends these back
        if not a.keep_models and not man["smoke"]:
            shutil.rmtree(mdir, ignore_errors=True)  # 1 to 16 GB each; the disk is 64 GiB
    results["seconds"] = time.time() - t0
    print(publish(d, results), end="")


def brief(res):
    if res.get("status") != "ok":
        return "%s (%s)" % (res.get("status"), res.get("message", ""))
    return "%.0f tok/s, %.0f MiB" % (res["tok_s"] or 0, res.get("peak_mib") or 0)


def publish(d, results):
    """DIR/results.json and DIR/table.txt, and on the device tool's machine those and every
    log in $OUT (what comes back from it). Returns the table."""
    table = render([results])
    for name, text in (("results.json", json.dumps(results, indent=1)), ("table.txt", table)):
        with open(os.path.join(d, name + ".tmp"), "w") as f:
            f.write(text)
        os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    out = os.environ.get("OUT")
    if not out or not os.path.isdir(out):
        return table
    for f in ("results.json", "table.txt"):
        shutil.copy2(os.path.join(d, f), os.path.join(out, f))
    with tarfile.open(os.path.join(out, "logs.tgz"), "w:gz") as tf:
        for sub in ("logs", "runs"):
            for root, _, files in os.walk(os.path.join(d, sub)):
                for f in files:
                    if f.endswith(".log") or f in ("hf.json", "peak.json", "trainer_log.jsonl"):
                        p = os.path.join(root, f)
                        tf.add(p, arcname=os.path.relpath(p, d))
    return table


# --- the table

def rate(flops):
    return "%.1f TFLOP/s" % (flops / 1e12) if flops >= 1e12 else "%.1f GFLOP/s" % (flops / 1e9)


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def cell(res, key, spec):
    if res.get("status") != "ok":
        return {"oom": "OOM", "timeout": "timeout", "not run": "not run"}.get(res.get("status"), "error")
    return fmt(res.get(key), spec)


def render(all_results):
    runs = {}
    for r in all_results:  # later files win for the same shape and method
        for e in r["runs"]:
            runs[(e["shape"], e["method"])] = e
    head = ["shape", "method", "llfc tok/s", "HF tok/s", "ratio", "llfc MFU", "HF MFU",
            "llfc MiB", "HF MiB", "ratio", "target", ""]
    rows = []
    for e in runs.values():
        l, h = e["llfc"], e["hf"]
        met = {True: "met", False: "missed", None: "-"}[e["target_met"]]
        rows.append([e["shape"], e["method"], cell(l, "tok_s", ".0f"), cell(h, "tok_s", ".0f"),
                     fmt(e["speed_ratio"], ".2f") + ("x" if e["speed_ratio"] else ""),
                     cell(l, "mfu", ".1%"), cell(h, "mfu", ".1%"),
                     cell(l, "peak_mib", ".0f"), cell(h, "peak_mib", ".0f"),
                     fmt(e["memory_ratio"], ".2f") + ("x" if e["memory_ratio"] else ""), e["target"], met])
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cols: "  ".join(str(c).rjust(w[i]) if 2 <= i <= 9 else str(c).ljust(w[i])
                                  for i, c in enumerate(cols)).rstrip() + "\n"
    s = "\n" + line(head) + line(["-" * x for x in w]) + "".join(line(r) for r in rows)
    first = all_results[-1]
    s += "\n"
    for r in all_results:
        dev = r["device"]["name"]
        s += ("peak: %s %dx%dx%d matmul, %s on %s (median of %d); torch %s, transformers %s, peft %s\n"
              % (r["peak_matmul"]["dtype"], r["peak_matmul"]["n"], r["peak_matmul"]["n"], r["peak_matmul"]["n"],
                 rate(r["peak_flops"]), dev, r["peak_matmul"]["reps"], r["versions"]["torch"],
                 r["versions"]["transformers"], r["versions"]["peft"]))
    attn = sorted({e["hf"].get("attention") for e in runs.values() if e["hf"].get("attention")})
    s += ("steps: %d, tokens/s over the last %d (after %d warm-up); rows of %d tokens (cutoff_len %d, packed); "
          "gradient checkpointing %s; HF attention: %s\n"
          % (first["steps"], first["steps"] - first["warmup"], first["warmup"],
             next(iter(runs.values()))["row_len"] if runs else 0, first["cutoff_len"],
             "on (both sides)" if first["gradient_checkpointing"] else "off (both sides)", ", ".join(attn) or "-"))
    s += ("memory: peak nvidia-smi memory.used over the run minus before it" if not first["smoke"] else
          "memory: peak RSS of each process (CPU smoke run)")
    s += "; MFU: model FLOPs (6N or 4N + 6N_lora, + 6 L T NH HD) x tok/s / peak\n"
    notes = []
    for e in runs.values():
        for side, name in ((e["llfc"], "llfc"), (e["hf"], "HF")):
            if side.get("status") != "ok":
                notes.append("%s %s %s: %s: %s" % (e["shape"], e["method"], name, side.get("status"),
                                                    side.get("message", "")))
            elif side.get("note"):
                notes.append("%s %s %s: %s" % (e["shape"], e["method"], name, side["note"]))
        extra = []
        if e["hf"].get("max_reserved_mib"):
            extra.append("HF torch max reserved %.0f MiB" % e["hf"]["max_reserved_mib"])
        if e["llfc"].get("planned_mib"):
            extra.append("llfc planned %.0f MiB" % e["llfc"]["planned_mib"])
        fl, ll = e["first_loss"], e.get("last_loss", [None, None])
        if fl[0] is not None and fl[1] is not None:
            extra.append("loss llfc %.4f / HF %.4f at step 1" % (fl[0], fl[1]) +
                         (", %.4f / %.4f at the last" % (ll[0], ll[1]) if None not in ll else ""))
        if e["llfc"].get("same_rows") is not None:
            extra.append("same rows: %s" % ("yes" if e["llfc"]["same_rows"] else "NO"))
        if extra:
            notes.append("%s %s: %s" % (e["shape"], e["method"], "; ".join(extra)))
    if notes:
        s += "\n" + "".join("  " + n + "\n" for n in notes)
    return s


def cmd_table(a):
    allr = []
    for p in a.results:
        with open(p) as f:
            allr.append(json.load(f))
    print(render(allr), end="")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage", help="write DIR and DIR.tgz (here, no GPU)")
    s.add_argument("dir")
    s.add_argument("--smoke", action="store_true", help="tiny shapes for the CPU")
    s.add_argument("--shapes", help="comma-separated; default all")
    s.add_argument("--methods", default=",".join(METHODS))
    s.add_argument("--steps", type=int, default=0, help="default 10 (smoke 4)")
    s.add_argument("--cutoff", type=int, default=0, help="cutoff_len; default 2048 (smoke 128)")
    s.add_argument("--repeat", type=int, default=2, help="copies of c4_demo in the data")
    s.add_argument("--gradient-checkpointing", action="store_true", help="both sides recompute")
    s.add_argument("--arch", default="sm_90", help="llfc --arch (H100/H200: sm_90)")
    s.add_argument("--llfc", default=os.path.join(ROOT, "build", "llfc"))
    r = sub.add_parser("run", help="train and time both sides; print the table")
    r.add_argument("dir")
    r.add_argument("--only", help="shapes, comma-separated; default all staged")
    r.add_argument("--methods", default=",".join(METHODS))
    r.add_argument("--steps", type=int, default=0, help="default: the staged number")
    r.add_argument("--warmup", type=int, default=None, help="steps left out of tokens/s (default 3; smoke 1)")
    r.add_argument("--timeout", type=int, default=300, help="seconds a run may take")
    r.add_argument("--deadline", type=int, default=None,
                   help="start no run after this many seconds (GPU default 540: the device tool's 10 minutes)")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (smoke)")
    r.add_argument("--keep-models", action="store_true", help="keep the weights after each shape")
    t = sub.add_parser("table", help="print the table of one or more results.json")
    t.add_argument("results", nargs="+")
    a = ap.parse_args()
    try:
        {"stage": cmd_stage, "run": cmd_run, "table": cmd_table}[a.cmd](a)
    except Failed as e:
        die(str(e))


if __name__ == "__main__":
    main()
