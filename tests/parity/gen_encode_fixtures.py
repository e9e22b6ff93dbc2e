#!/usr/bin/env python3
"""gen_encode_fixtures.py - LLaMA-Factory 0.9.5's own preprocessing, written as the fixtures
tests/unit/test_encode.c checks llfc's encoder against (runtime/encode.c).

For every case below this runs LLaMA-Factory's loader (_get_merged_dataset: the demo dataset of
../shared/data/llamafactory in LF's aligned form), get_template_and_fix_tokenizer, and
_get_preprocessed_dataset (the processor LF picks for the stage: supervised, packed supervised,
pretrain, pairwise, feedback), with the tokenizer of ../shared/tokenizers, and writes:

  tests/fixtures/encode/aligned/DATASET.json   LF's aligned examples: how many, a short hash of
                                               each (below), and the first few verbatim
  tests/fixtures/encode/cases/CASE.json        the options, LF's counts, a short hash of every
                                               encoded row, and the first rows verbatim

The C test rebuilds the aligned examples from the same raw files, checks them against the
hashes, encodes them, and compares row by row: "N/N rows identical".

Hashes: the first 16 hex digits of SHA-256 over a plain serialization (no JSON escaping to
agree on):
  aligned example  "p<n>;" then per message "<role>:<bytes>:<content>", then "r<n>;" and the
                   responses likewise, then "s<bytes>:<system>" and "t<bytes>:<tools>"
  encoded row      its integer lists in the order of ROW_FIELDS[stage], each written as decimal
                   numbers joined by "," and the lists joined by ";" (kto adds the tag as 0/1)

Needs: pip install llamafactory==0.9.5 and transformers 4.5x (4.57.1 was used). transformers
5.x rebuilds Llama-class tokenizers in Python and gives other ids than tokenizer.json
(deepseek_v3: 185 of 203 corpus texts differ), so it is not a faithful oracle here.
The llama3 tool prompt names today's date; it is pinned to 26 Jul 2024 (the C test does the
same).

    python3 tests/parity/gen_encode_fixtures.py [--shared ../shared] [CASE ...]
    GEN_FROM=CASE python3 tests/parity/gen_encode_fixtures.py     # resume the list at CASE

(The author ran it in a venv: python3 -m venv --system-site-packages V; V/bin/pip install
transformers==4.57.1; V/bin/python tests/parity/gen_encode_fixtures.py.) Cases named x_* use
templates whose models' tokenizers ../shared lacks, with the Qwen3 tokenizer; LF's stop words
that Qwen3 lacks become new special tokens there (ids from 151669), as LF adds them.
"""

import argparse
import copy
import datetime as _dt
import hashlib
import io
import json
import os
import sys
import contextlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "encode")
N_VERBATIM = 1  # rows kept verbatim per case (the rest only as hashes), for messages
CLIP = 256  # ... their first CLIP values of each list
N_ALIGNED_VERBATIM = 3
DATE = _dt.datetime(2024, 7, 26)

ROW_FIELDS = {
    "sft": ["input_ids", "labels"],
    "sft_packed": ["input_ids", "labels", "attention_mask", "position_ids"],
    "pt": ["input_ids"],
    "rm": ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"],
    "kto": ["input_ids", "labels", "kl_input_ids", "kl_labels"],
}

# The template names of issue 4 and the tokenizer of ../shared/tokenizers each goes with.
TOK = {
    "default": "llama2", "empty": "llama2", "alpaca": "llama2", "chatml": "qwen3", "qwen": "qwen3",
    "qwen3": "qwen3", "qwen3_nothink": "qwen3", "llama2": "llama2", "llama3": "llama3_1",
    "mistral": "mistral", "gemma": "gemma3", "gemma3": "gemma3", "deepseek3": "deepseek_v3",
    "phi": "phi-3-mini",
}


def case(name, template, dataset, stage="sft", tok=None, **opts):
    return dict(name=name, template=template, tokenizer=tok or TOK[template], dataset=dataset, stage=stage,
                cutoff_len=opts.pop("cutoff_len", 1024), options=opts)


CASES = []
for t in TOK:  # every template on alpaca and on the tool-calling set
    CASES.append(case(f"sft_{t}_alpaca", t, "alpaca_en_demo"))
    CASES.append(case(f"sft_{t}_glaive", t, "glaive_toolcall_en_demo"))
CASES += [
    case("sft_llama3_identity", "llama3", "identity", tok="llama3"),
    case("sft_qwen3_identity", "qwen3", "identity"),
    case("sft_alpaca_identity", "alpaca", "identity"),
    # options
    case("sft_qwen3_alpaca_prompt", "qwen3", "alpaca_en_demo", train_on_prompt=True),
    case("sft_llama3_glaive_prompt", "llama3", "glaive_toolcall_en_demo", train_on_prompt=True),
    case("sft_qwen_glaive_history", "qwen", "glaive_toolcall_en_demo", mask_history=True),
    case("sft_qwen3_glaive_history", "qwen3", "glaive_toolcall_en_demo", mask_history=True),
    case("sft_mistral_glaive_history_cut", "mistral", "glaive_toolcall_en_demo", mask_history=True, cutoff_len=96),
    case("sft_qwen3_alpaca_nothink", "qwen3", "alpaca_en_demo", enable_thinking=False),
    case("sft_qwen3_glaive_thinknone", "qwen3", "glaive_toolcall_en_demo", enable_thinking=None),
    case("sft_llama3_alpaca_cut64", "llama3", "alpaca_en_demo", cutoff_len=64),
    case("sft_gemma_glaive_cut128", "gemma", "glaive_toolcall_en_demo", cutoff_len=128),
    case("sft_qwen_alpaca_system", "qwen", "alpaca_en_demo", default_system="You are a terse assistant."),
    case("sft_qwen3_glaive_toolfmt", "qwen3", "glaive_toolcall_en_demo", tool_format="llama3"),
    # packing
    case("sft_qwen3_alpaca_packed", "qwen3", "alpaca_en_demo", packing=True, cutoff_len=512),
    case("sft_llama3_glaive_neat", "llama3", "glaive_toolcall_en_demo", neat_packing=True, cutoff_len=1024),
    case("sft_mistral_alpaca_packed_cut128", "mistral", "alpaca_en_demo", packing=True, cutoff_len=128),
    # pre-training (packing: null means on for pt, and then cutoff_len is not reduced by one)
    case("pt_empty_c4_qwen3", "empty", "c4_demo", stage="pt", tok="qwen3"),
    case("pt_llama3_c4", "llama3", "c4_demo", stage="pt", tok="llama3"),
    case("pt_default_c4_llama2", "default", "c4_demo", stage="pt", cutoff_len=512),
    case("pt_mistral_c4_nopack", "mistral", "c4_demo", stage="pt", packing=False, cutoff_len=256),
    case("pt_qwen3_c4_nopack", "qwen3", "c4_demo", stage="pt", packing=False, cutoff_len=256),
    case("pt_gemma3_c4_packtrue", "gemma3", "c4_demo", stage="pt", packing=True, cutoff_len=300),
    # pairwise (rm and dpo share LF's pairwise processor)
    case("dpo_qwen3", "qwen3", "dpo_en_demo", stage="rm"),
    case("dpo_llama3", "llama3", "dpo_en_demo", stage="rm"),
    case("dpo_mistral_cut128", "mistral", "dpo_en_demo", stage="rm", cutoff_len=128),
    case("dpo_gemma", "gemma", "dpo_en_demo", stage="rm"),
    case("dpo_default", "default", "dpo_en_demo", stage="rm"),
    case("dpo_qwen3_nothink", "qwen3", "dpo_en_demo", stage="rm", enable_thinking=False),
    # kto
    case("kto_qwen3", "qwen3", "kto_en_demo", stage="kto"),
    case("kto_llama3", "llama3", "kto_en_demo", stage="kto"),
    case("kto_llama2_cut100", "llama2", "kto_en_demo", stage="kto", cutoff_len=100),
    case("kto_phi", "phi", "kto_en_demo", stage="kto"),
    # LF works per batch of preprocessing_batch_size examples: KL partners, knapsacks, pt blocks
    case("kto_qwen3_batch64", "qwen3", "kto_en_demo", stage="kto", preprocessing_batch_size=64),
    case("sft_qwen3_glaive_packed_batch128", "qwen3", "glaive_toolcall_en_demo", packing=True, cutoff_len=2048,
         preprocessing_batch_size=128),
    case("pt_llama2_c4_batch50", "llama2", "c4_demo", stage="pt", cutoff_len=200, preprocessing_batch_size=50),
]


# every other template of lua/templates on the first examples of the tool-calling set, with the
# qwen3 tokenizer (enough to check the encoder's side of each: efficient_eos, token slots, kinds);
# the efficient_eos ones also with mask_history, and as dpo and kto
OTHER = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "lua", "templates"))
               if f.endswith(".lua") and f[:-4] not in TOK)
EFFICIENT_EOS = ["glm4", "chatglm3", "falcon", "breeze", "gemma2", "solar"]
for t in OTHER:
    CASES.append(case(f"x_{t}_glaive", t, "glaive_toolcall_en_demo", tok="qwen3", max_samples=24))
for t in EFFICIENT_EOS:
    CASES.append(case(f"x_{t}_glaive_history", t, "glaive_toolcall_en_demo", tok="qwen3", max_samples=24,
                      mask_history=True, cutoff_len=200))
    CASES.append(case(f"x_{t}_dpo", t, "dpo_en_demo", stage="rm", tok="qwen3", max_samples=24, cutoff_len=300))
    CASES.append(case(f"x_{t}_kto", t, "kto_en_demo", stage="kto", tok="qwen3", max_samples=24, cutoff_len=300))

# cases whose printed example (LF's print_data_example) is kept for tests/unit/test_preview.c
PREVIEW_CASES = {"sft_qwen3_identity", "dpo_llama3", "pt_default_c4_llama2", "kto_llama3", "sft_llama3_glaive_neat"}


def row_kind(c, data_args):
    if c["stage"] == "sft":
        return "sft_packed" if data_args.packing else "sft"
    return c["stage"]


def clip(v):
    return v[:CLIP] if isinstance(v, list) else v


def h16(b):
    return hashlib.sha256(b).hexdigest()[:16]


def ser_str(s):
    b = (s or "").encode("utf-8")
    return str(len(b)).encode() + b":" + b


def aligned_bytes(ex):
    out = b"p%d;" % len(ex["_prompt"])
    for m in ex["_prompt"]:
        out += m["role"].encode() + b":" + ser_str(m["content"])
    out += b"r%d;" % len(ex["_response"])
    for m in ex["_response"]:
        out += m["role"].encode() + b":" + ser_str(m["content"])
    return out + b"s" + ser_str(ex["_system"]) + b"t" + ser_str(ex["_tools"])


def row_bytes(row, kind):
    lists = [row[k] for k in ROW_FIELDS[kind]]
    s = ";".join(",".join(str(int(x)) for x in lst) for lst in lists)
    if kind == "kto":
        s += ";%d" % (1 if row["kto_tags"] else 0)
    return s.encode()


def run_case(c, shared, aligned_done):
    from transformers import AutoTokenizer, Seq2SeqTrainingArguments

    from llamafactory.data import template as tm
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.data.loader import _get_merged_dataset, _get_preprocessed_dataset
    from llamafactory.hparams import DataArguments, ModelArguments

    tokdir = os.path.join(shared, "tokenizers", c["tokenizer"])
    o = dict(c["options"])
    packing = o.pop("packing", None)
    # what LF's parser does: DataArguments.__post_init__ (neat_packing -> packing; packing ->
    # cutoff_len - 1), then packing = (stage == "pt") when it was not given
    data_args = DataArguments(template=c["template"], dataset=c["dataset"],
                              dataset_dir=os.path.join(shared, "data", "llamafactory"),
                              cutoff_len=c["cutoff_len"], packing=packing, overwrite_cache=True, **o)
    if data_args.packing is None:
        data_args.packing = c["stage"] == "pt"
    model_args = ModelArguments(model_name_or_path=tokdir)
    training_args = Seq2SeqTrainingArguments(output_dir="/tmp/enc_gen_out", do_train=True, report_to="none")
    tokenizer = AutoTokenizer.from_pretrained(tokdir, padding_side="right")

    saved = copy.deepcopy(tm.TEMPLATES[c["template"]])
    printed = io.StringIO()  # LF prints the first example ("training example:" ...)
    try:
        with contextlib.redirect_stdout(printed):
            merged = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, c["stage"])
            template = tm.get_template_and_fix_tokenizer(tokenizer, data_args)
            # text only: the image plugins of gemma3 & co. want a processor that a bare
            # tokenizer folder lacks, and do nothing to text-only examples
            template.mm_plugin = get_mm_plugin("base")
            enc = _get_preprocessed_dataset(merged, data_args, training_args, c["stage"], template, tokenizer)
    finally:
        tm.TEMPLATES[c["template"]] = saved

    ds = c["dataset"]
    if ds not in aligned_done and data_args.max_samples is None:  # the whole dataset only
        aligned_done.add(ds)
        rows = [merged[i] for i in range(len(merged))]
        doc = {
            "dataset": ds,
            "n": len(rows),
            "hashes": [h16(aligned_bytes(r)) for r in rows],
            "first": [{k: r[k] for k in ("_prompt", "_response", "_system", "_tools")}
                      for r in rows[:N_ALIGNED_VERBATIM]],
        }
        write(os.path.join(OUT, "aligned", ds + ".json"), doc)

    kind = row_kind(c, data_args)
    rows = [enc[i] for i in range(len(enc))]
    doc = {
        "case": c["name"], "template": c["template"], "tokenizer": c["tokenizer"], "dataset": ds,
        "stage": c["stage"], "cutoff_len": c["cutoff_len"], "packing": packing,
        "options": c["options"], "row_kind": kind,
        "effective_cutoff_len": data_args.cutoff_len,
        "n_examples": len(merged), "n_rows": len(rows),
        "n_tokens": sum(len(r[ROW_FIELDS[kind][0]]) for r in rows),
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "hashes": [h16(row_bytes(r, kind)) for r in rows],
        "first": [{k: clip(r[k]) for k in ROW_FIELDS[kind] + (["kto_tags"] if kind == "kto" else [])}
                  for r in rows[:N_VERBATIM]],
    }
    write(os.path.join(OUT, "cases", c["name"] + ".json"), doc)
    if c["name"] in PREVIEW_CASES:  # what `llfc preview` must print, byte for byte
        os.makedirs(os.path.join(OUT, "preview"), exist_ok=True)
        with open(os.path.join(OUT, "preview", c["name"] + ".txt"), "w", encoding="utf-8") as f:
            f.write(printed.getvalue())
    return len(merged), len(rows)


def write(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    shared = os.path.abspath(a.shared)

    try:
        import torchaudio  # noqa: F401  (LF's mm_plugin imports it; text needs none of it)
    except Exception:  # e.g. a torchaudio built for another CUDA than torch: stub it out
        import importlib.machinery
        import types

        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    import llamafactory.data.tool_utils as tu

    class FixedDate(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return DATE

    tu.datetime = FixedDate
    os.environ.setdefault("HF_DATASETS_CACHE", "/tmp/enc_hf_datasets")
    aligned_done = set()
    ap_from = os.environ.get("GEN_FROM")  # resume: start at this case
    todo = [c for c in CASES if not a.cases or c["name"] in a.cases]
    if ap_from:
        todo = todo[[c["name"] for c in todo].index(ap_from):]
    for c in todo:
        try:
            n_ex, n_rows = run_case(c, shared, aligned_done)
        except Exception as e:  # e.g. a template's token the tokenizer lacks: LF fails too
            if not c["name"].startswith("x_"):
                raise
            path = os.path.join(OUT, "cases", c["name"] + ".json")
            if os.path.exists(path):
                os.remove(path)
            print(f"{c['name']}: skipped, LF fails: {type(e).__name__}: {e}", flush=True)
            continue
        print(f"{c['name']}: {n_ex} examples -> {n_rows} rows", flush=True)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# encode fixtures\n\nWritten by tests/parity/gen_encode_fixtures.py (LLaMA-Factory 0.9.5, "
                "transformers 4.57.1); checked by tests/unit/test_encode.c. Do not edit by hand.\n")


if __name__ == "__main__":
    main()
