#!/usr/bin/env python3
"""gen_aligned_fixtures.py - LLaMA-Factory's own loader + converter output, as fixtures for
tests/unit/test_dataset.c.

Runs llamafactory 0.9.5's data/loader.py (_get_merged_dataset: parser, load_dataset, num_samples,
max_samples, align_dataset, merge_dataset) and data_utils.split_dataset on
  - every local, text-only dataset of ../shared/data/llamafactory/dataset_info.json, and
  - the small datasets in tests/fixtures/data (CSV, TXT, folders, openai, history, ranking, ...)
and writes tests/fixtures/data/lf_aligned.json: per case the first 50 examples in the aligned
form, the count, and a SHA-256 over all of them in the canonical form that the C test also
computes (see canon() below).

    pip install llamafactory==0.9.5
    LLFC_SHARED=../shared python3 tests/parity/gen_aligned_fixtures.py
"""
import hashlib
import json
import os
import sys
from types import SimpleNamespace

import types

import transformers

# torchaudio (imported by LF's mm_plugin, unused for text) may not match the installed torch's
# CUDA build and then fails on import; text loading never calls it
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))

from llamafactory.data import loader as lf_loader
from llamafactory.data.data_utils import split_dataset
from llamafactory.data.parser import get_dataset_list

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("LLFC_SHARED", os.path.join(ROOT, "..", "shared"))
LF_DIR = os.path.join(SHARED, "data", "llamafactory")
FIX_DIR = os.path.join(ROOT, "tests", "fixtures", "data")
KEEP = 25  # examples kept verbatim per case (the SHA-256 covers all of them)
KEEP_MIX = 8  # for the mixing / splitting cases, whose examples the plain cases hold already

ROLE = {"user": 0, "assistant": 1, "function": 2, "observation": 3}


def canon(ex):
    """One example as bytes: fields split by 0x1d, messages by 0x1e, role and content by 0x1f."""
    def msgs(ms):
        return "\x1e".join(f"{ROLE[m['role']]}\x1f{m['content']}" for m in ms)

    s = "\x1d".join([msgs(ex["prompt"]), msgs(ex["response"]), ex["system"], ex["tools"], str(ex["kto"])])
    return (s + "\n").encode("utf-8")


def args(dataset_dir, **kw):
    data_args = SimpleNamespace(dataset_dir=dataset_dir, preprocessing_num_workers=None, streaming=False,
                                max_samples=kw.get("max_samples"), media_dir=dataset_dir, overwrite_cache=True,
                                mix_strategy=kw.get("mix_strategy", "concat"),
                                interleave_probs=kw.get("interleave_probs"), val_size=kw.get("val_size", 0.0),
                                eval_on_each_dataset=False, buffer_size=16384)
    model_args = SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, seed=kw.get("seed", 42), dataloader_num_workers=0)
    return model_args, data_args, training_args


def kto_of(raw, attr):
    if attr.kto_tag and isinstance(raw.get(attr.kto_tag), bool):
        return int(raw[attr.kto_tag])
    return -1


def aligned(ds, ktos):
    out = []
    for ex, kto in zip(ds, ktos):
        out.append({
            "prompt": [{"role": m["role"], "content": m["content"]} for m in ex["_prompt"]],
            "response": [{"role": m["role"], "content": m["content"]} for m in ex["_response"]],
            "system": ex["_system"] or "",
            "tools": ex["_tools"] or "",
            "kto": kto,
        })
    return out


def load(names, dataset_dir, stage, eval_names=None, **kw):
    """LF's _get_merged_dataset + split_dataset; returns (train, eval) lists of aligned examples."""
    model_args, data_args, training_args = args(dataset_dir, **kw)
    transformers.set_seed(training_args.seed)  # as LF's get_train_args does
    attrs = get_dataset_list(names, dataset_dir)
    # the kto tag is not in the aligned form: tag each raw record with its position to find it
    merged = lf_loader._get_merged_dataset(names, model_args, data_args, training_args, stage)
    kto = [-1] * len(merged)
    if any(a.kto_tag for a in attrs):  # kto cases are single-dataset, unsampled: order is the file's
        (a,) = attrs
        raw = lf_loader.load_dataset("json", data_files=[os.path.join(dataset_dir, a.dataset_name)], split="train")
        kto = [kto_of(r, a) for r in raw]
    merged = merged.add_column("_kto", kto)
    ev_merged = None
    if eval_names:
        ev_merged = lf_loader._get_merged_dataset(eval_names, model_args, data_args, training_args, stage)
        ev_merged = ev_merged.add_column("_kto", [-1] * len(ev_merged))
    train, ev = split_dataset(merged, ev_merged, data_args, seed=training_args.seed)
    t = train.get("train")
    e = ev.get("validation")
    return (aligned(t, t["_kto"]) if t is not None else [],
            aligned(e, e["_kto"]) if e is not None else [])


def case(out, key, names, dataset_dir, stage, keep=KEEP, **kw):
    train, ev = load(names, dataset_dir, stage, **kw)
    if key == "fx_folder":
        # llfc reads a folder's files sorted by name; LF takes os.listdir's order, which the file
        # system decides. The fixture's records name their file: order them by it, stably.
        train.sort(key=lambda ex: ex["prompt"][0]["content"].split(" ")[0])
    entry = {"names": names, "dir": "shared" if dataset_dir == LF_DIR else "fixtures", "stage": stage}
    entry.update({k: v for k, v in kw.items()})
    for part, exs in (("train", train), ("eval", ev)):
        h = hashlib.sha256()
        for ex in exs:
            h.update(canon(ex))
        entry[part] = {"count": len(exs), "sha256": h.hexdigest(), "first": exs[:keep]}
    out[key] = entry
    print(f"{key}: {len(train)} train, {len(ev)} eval", file=sys.stderr)


def main():
    out = {}
    # every local text-only dataset LF ships
    info = json.load(open(os.path.join(LF_DIR, "dataset_info.json")))
    for name, e in info.items():
        if "file_name" not in e or not os.path.exists(os.path.join(LF_DIR, e["file_name"])):
            continue
        cols = e.get("columns", {})
        if any(k in cols for k in ("images", "videos", "audios")):
            continue
        stage = "rm" if e.get("ranking") else "kto" if "kto_tag" in cols else \
            "pt" if cols.get("prompt") == "text" else "sft"
        case(out, name, [name], LF_DIR, stage)
    # mixing, sampling, splitting on LF's data
    mix = dict(keep=KEEP_MIX)
    case(out, "mix_concat_split", ["identity", "alpaca_en_demo"], LF_DIR, "sft", **mix, val_size=0.1, seed=42)
    case(out, "split_count", ["alpaca_en_demo"], LF_DIR, "sft", **mix, val_size=17, seed=7)
    case(out, "max_samples", ["alpaca_en_demo", "identity"], LF_DIR, "sft", **mix, max_samples=30)
    case(out, "interleave_under", ["identity", "alpaca_en_demo"], LF_DIR, "sft", **mix,
         mix_strategy="interleave_under")
    case(out, "interleave_over", ["identity", "alpaca_en_demo"], LF_DIR, "sft", **mix, mix_strategy="interleave_over",
         max_samples=200)
    case(out, "interleave_under_probs", ["identity", "alpaca_en_demo"], LF_DIR, "sft", **mix,
         mix_strategy="interleave_under", interleave_probs=[0.3, 0.7], seed=3)
    case(out, "interleave_over_probs", ["identity", "alpaca_en_demo"], LF_DIR, "sft", **mix,
         mix_strategy="interleave_over", interleave_probs=[0.2, 0.8], seed=1234, max_samples=120)
    case(out, "interleave_split", ["alpaca_en_demo", "glaive_toolcall_en_demo"], LF_DIR, "sft", **mix,
         mix_strategy="interleave_under", interleave_probs=[0.5, 0.5], val_size=0.25, seed=11)
    # llfc's own small datasets (tests/fixtures/data/dataset_info.json)
    finfo = json.load(open(os.path.join(FIX_DIR, "dataset_info.json")))
    for name, e in finfo.items():
        if not e.get("lf_case"):
            continue
        case(out, "fx_" + name, [name], FIX_DIR, e["lf_case"])
    case(out, "eval_dataset", ["alpaca_en_demo"], LF_DIR, "sft", keep=KEEP_MIX, max_samples=40,
         eval_names=["identity", "glaive_toolcall_en_demo"], mix_strategy="interleave_over", seed=21)
    case(out, "fx_num_samples", ["num_samples_csv", "num_samples_over"], FIX_DIR, "sft", seed=5)
    with open(os.path.join(FIX_DIR, "lf_aligned.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
