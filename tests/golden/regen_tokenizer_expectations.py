#!/usr/bin/env python3
"""regen_tokenizer_expectations.py - recompute the tokenizer oracle with Hugging Face.

    pip install tokenizers
    python3 tests/golden/regen_tokenizer_expectations.py OUT_DIR [--shared ../shared] [--check]

For each tokenizer in SHARED/tokenizers/ (a folder with a tokenizer.json), encodes every line
of SHARED/tokenizers/corpus_public.jsonl with HF's Rust library and writes
OUT_DIR/<name>/expected_public.jsonl (add_special_tokens=False) and
OUT_DIR/<name>/expected_public_special.jsonl (True), one {"text": ..., "ids": [...]} per line
in the format of the files in ../shared (which is read-only: hence OUT_DIR). With --check it
also says, per file, whether what it wrote is byte-identical to the one in ../shared.
"""
import argparse
import json
import os
import sys

try:
    import tokenizers
    from tokenizers import Tokenizer
except ImportError:
    sys.exit("needs Hugging Face tokenizers: pip install tokenizers")


def line(text, ids):
    return json.dumps({"text": text, "ids": ids}, ensure_ascii=False, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    ap.add_argument("--check", action="store_true", help="compare with the files in --shared")
    args = ap.parse_args()

    root = os.path.join(args.shared, "tokenizers")
    with open(os.path.join(root, "corpus_public.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(l)["text"] for l in f if l.strip()]
    names = sorted(d for d in os.listdir(root)
                   if os.path.isfile(os.path.join(root, d, "tokenizer.json")))
    print(f"tokenizers {tokenizers.__version__}: {len(texts)} texts x {len(names)} tokenizers")
    differ = 0
    for name in names:
        tok = Tokenizer.from_file(os.path.join(root, name, "tokenizer.json"))
        os.makedirs(os.path.join(args.out_dir, name), exist_ok=True)
        for fname, special in (("expected_public.jsonl", False),
                               ("expected_public_special.jsonl", True)):
            encs = tok.encode_batch(texts, add_special_tokens=special)
            body = "".join(line(t, e.ids) + "\n" for t, e in zip(texts, encs))
            out = os.path.join(args.out_dir, name, fname)
            with open(out, "w", encoding="utf-8") as f:
                f.write(body)
            status = ""
            if args.check:
                ref = os.path.join(root, name, fname)
                with open(ref, encoding="utf-8") as f:
                    same = f.read() == body
                differ += not same
                status = "  same as ../shared" if same else "  DIFFERS from ../shared"
            print(f"  {out}{status}")
    if args.check and differ:
        sys.exit(f"{differ} file(s) differ")


if __name__ == "__main__":
    main()
