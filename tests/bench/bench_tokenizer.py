#!/usr/bin/env python3
"""bench_tokenizer.py - llfc's tokenizer against Hugging Face `tokenizers`, in MB/s.

    tests/bench/bench_tokenizer.sh [--mb 32] [--tokenizers qwen3,gemma3] [--threads N]

(the .sh builds the C driver, tests/bench/bench_tokenizer.c, and runs this.) The dataset is
tens of MB of real text in many languages, assembled deterministically from what every
Debian/Ubuntu machine has: the translated messages of the gettext catalogs in
/usr/share/locale (~100 languages), man pages in a dozen languages, and Python's standard
library sources (code); missing sources are skipped. Records are ~4 KB, like a dataset's.

For each tokenizer of ../shared/tokenizers it times encoding (add_special_tokens=False; the
tokenizer load is not timed) of every record:
  - HF single-threaded: Tokenizer.encode_batch with RAYON_NUM_THREADS=1;
  - llfc single-threaded: one thread, one TokScratch;
  - both on all cores: HF's encode_batch with its thread pool, llfc with N threads sharing
    one Tokenizer;
and prints MB/s, the llfc/HF ratio, and whether both gave the same ids (count and sum).
Not a timed test: it prints a table. Needs `pip install tokenizers`.
"""
import argparse
import gettext
import glob
import gzip
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["qwen3", "llama3", "llama3_1", "deepseek_v3", "gemma3", "mistral", "llama2",
         "phi-3-mini"]


# --- the dataset

def records_from(texts, size=4096):
    """Pack strings into records of about `size` bytes."""
    buf, n = [], 0
    for t in texts:
        buf.append(t)
        n += len(t.encode("utf-8"))
        if n >= size:
            yield "\n".join(buf)
            buf, n = [], 0
    if buf:
        yield "\n".join(buf)


def gettext_texts():
    files = sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo"))
    by_lang = {}
    for f in files:
        by_lang.setdefault(f.split("/")[4], []).append(f)
    # round-robin over languages so that a prefix of the stream has all of them
    queues = [list(v) for _, v in sorted(by_lang.items())]
    while any(queues):
        for q in queues:
            if not q:
                continue
            try:
                with open(q.pop(0), "rb") as fh:
                    cat = gettext.GNUTranslations(fh)._catalog
            except Exception:
                continue
            msgs = [v for k, v in sorted(cat.items(), key=lambda kv: str(kv[0])) if k and v]
            yield from records_from(msgs)


def man_texts():
    for f in sorted(glob.glob("/usr/share/man/*/man1/*.gz")):
        try:
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                yield from records_from(fh.read().split("\n"))
        except Exception:
            continue


def python_texts():
    lib = os.path.dirname(os.__file__)
    for f in sorted(glob.glob(os.path.join(lib, "**", "*.py"), recursive=True)):
        try:
            with open(f, encoding="utf-8") as fh:
                yield from records_from(fh.read().split("\n"))
        except Exception:
            continue


def build_dataset(path, mb, shared):
    """Write ~mb MB of records: 60% translations, 15% man pages, 25% code."""
    target = mb * 1e6
    parts = [(gettext_texts(), 0.60), (man_texts(), 0.15), (python_texts(), 0.25)]
    total = 0
    with open(path, "w", encoding="utf-8") as out:
        for gen, share in parts:
            got = 0
            for rec in gen:
                if got >= share * target:
                    break
                out.write(json.dumps({"text": rec}, ensure_ascii=False) + "\n")
                got += len(rec.encode("utf-8"))
            total += got
        corpus = os.path.join(shared, "tokenizers", "corpus_public.jsonl")
        while total < target:  # a machine without those sources: the corpus, repeated
            with open(corpus, encoding="utf-8") as fh:
                for line in fh:
                    out.write(line)
                    total += len(json.loads(line)["text"].encode("utf-8"))
    return total


# --- the runs

def hf_worker(name, data, shared):
    """Child process: HF encode_batch over the dataset (threads set by RAYON_NUM_THREADS)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(shared, "tokenizers", name, "tokenizer.json"))
    with open(data, encoding="utf-8") as fh:
        texts = [json.loads(l)["text"] for l in fh]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    tok.encode_batch(texts[:50], add_special_tokens=False)  # warm up the thread pool
    start = time.perf_counter()
    encs = tok.encode_batch(texts, add_special_tokens=False)
    secs = time.perf_counter() - start
    print(json.dumps({"mb_per_s": nbytes / 1e6 / secs, "seconds": secs,
                      "tokens": sum(len(e.ids) for e in encs),
                      "id_sum": sum(sum(e.ids) for e in encs)}))


def run_json(cmd, env=None):
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().split("\n")[-1])


def hf_run(name, data, shared, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    return run_json([sys.executable, __file__, "--hf-worker", name, "--data", data,
                     "--shared", shared], env)


def llfc_run(binary, name, data, shared, threads):
    return run_json([binary, os.path.join(shared, "tokenizers", name), data, str(threads)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "bench_tokenizer"))
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    ap.add_argument("--data", default="/tmp/llfc_bench_tokenizer.jsonl")
    ap.add_argument("--mb", type=float, default=32)
    ap.add_argument("--tokenizers", default=",".join(NAMES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--hf-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_worker:
        return hf_worker(args.hf_worker, args.data, args.shared)

    import tokenizers
    if not os.path.exists(args.data) or os.path.getsize(args.data) < args.mb * 0.9e6:
        print(f"building {args.data} ({args.mb:.0f} MB)...", flush=True)
        build_dataset(args.data, args.mb, args.shared)
    size = os.path.getsize(args.data) / 1e6
    n = args.threads
    print(f"dataset {args.data}: {size:.1f} MB of JSONL; HF tokenizers "
          f"{tokenizers.__version__}; {n} threads for 'all cores'")
    head = (f"{'tokenizer':12s} {'HF 1t':>8s} {'llfc 1t':>8s} {'ratio':>6s}   "
            f"{'HF ' + str(n) + 't':>8s} {'llfc ' + str(n) + 't':>8s} {'ratio':>6s} "
            f"{'llfc scaling':>12s}  same ids")
    print(head + "\n" + "-" * len(head))
    for name in args.tokenizers.split(","):
        h1 = hf_run(name, args.data, args.shared, 1)
        l1 = llfc_run(args.bin, name, args.data, args.shared, 1)
        hn = hf_run(name, args.data, args.shared, n)
        ln = llfc_run(args.bin, name, args.data, args.shared, n)
        same = (h1["tokens"], h1["id_sum"]) == (l1["tokens"], l1["id_sum"])
        print(f"{name:12s} {h1['mb_per_s']:8.2f} {l1['mb_per_s']:8.2f} "
              f"{l1['mb_per_s'] / h1['mb_per_s']:5.1f}x   {hn['mb_per_s']:8.2f} "
              f"{ln['mb_per_s']:8.2f} {ln['mb_per_s'] / hn['mb_per_s']:5.1f}x "
              f"{ln['mb_per_s'] / l1['mb_per_s']:11.2f}x  {'yes' if same else 'NO'}",
              flush=True)


if __name__ == "__main__":
    main()
