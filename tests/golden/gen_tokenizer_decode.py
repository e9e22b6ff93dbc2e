#!/usr/bin/env python3
"""gen_tokenizer_decode.py - write the decode fixtures: ids -> what HF's decode gives.

    pip install tokenizers
    python3 tests/golden/gen_tokenizer_decode.py [--shared ../shared]

(1) The 8 real tokenizers of ../shared:
For each tokenizer in SHARED/tokenizers/ writes tests/fixtures/tokenizers/<name>/decode.jsonl,
lines {"ids": [...], "skip_special_tokens": bool, "text": "..."} with the text of HF's
Tokenizer.decode(ids, skip_special_tokens) for both flags. The ids are:
  - every 12th corpus line's expected_public_special ids, cut to 40 ids (cuts fall inside
    words and inside multi-byte characters, which is what decode must survive);
  - hand-picked sequences: special and added tokens around text, ids out of the vocabulary
    (HF skips them), lone byte-fallback / byte-level pieces of a character, the empty list.
(2) Small synthetic tokenizers for what the 8 do not use (added-token lstrip/rstrip/
single_word/normalized rules, Metaspace first/never, split behaviors, Digits, Punctuation,
BertPreTokenizer, subword prefix/suffix, byte fallback with unk fusing, Bert/Roberta
processors, WordPiece/BPE/Metaspace decoders...): each is a BPE trained here by HF's own
trainer on the corpus, written to tests/fixtures/tokenizers/synthetic/<case>/tokenizer.json
with encode.jsonl ({"text", "add_special_tokens", "ids"}) and decode.jsonl, all from HF.
HF's trainer breaks ties between equally frequent pairs arbitrarily, so each run trains
slightly different synthetic tokenizers; each set of files is consistent in itself.
Kept small on purpose: the files are committed (tests/unit/test_tokenizer.c reads them).
"""
import argparse
import json
import os
import sys

try:
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
except ImportError:
    sys.exit("needs Hugging Face tokenizers: pip install tokenizers")

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "tokenizers")


def crafted(tok, tj):
    """Hand-picked id sequences that exercise decode's special cases."""
    added = [a["id"] for a in tj["added_tokens"]][:6]
    text = tok.encode("Hello world, ça va? 你好 😀", add_special_tokens=False).ids
    size = tok.get_vocab_size(with_added_tokens=True)
    seqs = [
        [],
        added,
        text[:3] + added[:2] + text[3:],
        added[:1] + text + added[1:2],
        text + [size + 10, size + 1000],  # unknown ids are skipped
        tok.encode("😀", add_special_tokens=False).ids[:1],  # a lone piece of a character
        tok.encode(" leading and trailing  ", add_special_tokens=False).ids,
    ]
    vocab = tj["model"]["vocab"]
    fallback = [vocab[k] for k in ("<0xE4>", "<0xBD>", "<0xA0>", "<0x41>") if k in vocab]
    if fallback:
        seqs.append(fallback)  # 你 + A as byte-fallback tokens
        seqs.append(fallback[:2] + text[:2])  # an incomplete character, then text
    return seqs


# --- synthetic tokenizers

TEXTS = [
    "[CLS] My name is Anthony [SEP]",
    "<mask> My name <mask> A<mask> <mask>ony <mask>",
    "Hi <mask> there\t<mask>\t<mask>\u2000",
    "<mask>, <mask>- \u25cc\u0330<mask>",
    "my  name   is my",
    " leading spaces and trailing  ",
    "Caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \ufb01 \u2126 \u2460",
    "well-known re-entry 2024-01-15: 12345 items, 3.14!",
    "don't I'M we'll (quoted) [bracket] {brace} \"q\"",
    "emoji \U0001f600\U0001f44d\U0001f3fd and \u4e2d\u6587 \u65e5\u672c\u8a9e xyz",
    "<s>Hello</s> <s> world </s>",
    "<|endoftext|>hello world<|endoftext|> hello worlds",
    "tab\tnew\nline\r\nend",
    "\u0130stanbul \u03a3\u039f\u03a6\u0399\u0391 \u00df",
    "",
    " ",
    "a",
    "unknown: \u16a0\u16a1 \U0001d400 \u2603",
]


def corpus_texts(root, n=8):
    with open(os.path.join(root, "corpus_public.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(l)["text"] for l in f if l.strip()]
    return texts, [t[:100] for t in texts[::30]][:n]


def trained(corpus, model, pre_tokenizer=None, normalizer=None, vocab_size=260, specials=()):
    """A BPE trained by HF on the corpus, as a tokenizer.json dict."""
    tok = Tokenizer(model)
    if normalizer:
        tok.normalizer = normalizer
    if pre_tokenizer:
        tok.pre_tokenizer = pre_tokenizer
    kw = {}
    if model.continuing_subword_prefix:
        kw["continuing_subword_prefix"] = model.continuing_subword_prefix
    if model.end_of_word_suffix:
        kw["end_of_word_suffix"] = model.end_of_word_suffix
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  limit_alphabet=120, show_progress=False, **kw)
    tok.train_from_iterator(corpus, trainer)
    return tok


def add_byte_tokens(tj):
    """SentencePiece-style "<0xAB>" byte tokens in the model's vocabulary."""
    vocab = tj["model"]["vocab"]
    for b in range(256):
        vocab.setdefault("<0x%02X>" % b, len(vocab))


def synthetic_cases(corpus):
    """name -> tokenizer.json dict (each built and adjusted through HF's own objects)."""
    cases = {}

    # added-token rules on a lowercasing tokenizer without pre-tokenizer or decoder
    t = trained(corpus, models.BPE(unk_token="<unk>"), normalizer=normalizers.Lowercase(),
                specials=["<unk>"])
    t.add_tokens([AddedToken("my", lstrip=True, rstrip=True), AddedToken("name"),
                  AddedToken("ony", single_word=True),
                  AddedToken("<mask>", single_word=True, lstrip=True, rstrip=True)])
    t.add_special_tokens([AddedToken("[CLS]", special=True), AddedToken("[SEP]", special=True),
                          AddedToken("wOrLd", special=True, normalized=True)])
    cases["added_rules"] = t

    # SentencePiece style: NFKC, Metaspace "first", byte fallback, fused unk, a template
    t = trained(corpus, models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True),
                normalizer=normalizers.NFKC(),
                pre_tokenizer=pre_tokenizers.Metaspace(prepend_scheme="first"),
                specials=["<unk>", "<s>", "</s>"])
    tj = json.loads(t.to_str())
    add_byte_tokens(tj)
    t = Tokenizer.from_str(json.dumps(tj))
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", t.token_to_id("<s>")),
                                              ("</s>", t.token_to_id("</s>"))])
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                   decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    t.add_tokens([AddedToken("<s>", special=True, rstrip=True)])
    cases["metaspace_first"] = t

    # Metaspace never, no split, regex Replace + Strip normalizers, Metaspace decoder
    t = trained(corpus, models.BPE(unk_token="<unk>"),
                normalizer=normalizers.Sequence([normalizers.Strip(),
                                                 normalizers.Replace(Regex(" {2,}"), " ")]),
                pre_tokenizer=pre_tokenizers.Metaspace(prepend_scheme="never", split=False),
                specials=["<unk>"])
    t.decoder = decoders.Metaspace(prepend_scheme="never")
    cases["metaspace_never"] = t

    # word-piece-like BPE: ## prefix, </w> suffix, BERT normalization and pre-tokenizer
    t = trained(corpus, models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                                   end_of_word_suffix="</w>"),
                normalizer=normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(),
                                                 normalizers.Lowercase()]),
                pre_tokenizer=pre_tokenizers.BertPreTokenizer(),
                specials=["[UNK]", "[CLS]", "[SEP]"])
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")),
                                                 ("[CLS]", t.token_to_id("[CLS]")))
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    cases["subword_affixes"] = t

    # split behaviors, Digits, Punctuation, Whitespace; NFKD + Prepend; Roberta; WordPiece decoder
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="contiguous", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(behavior="merged_with_next"),
        pre_tokenizers.Whitespace(),
    ])
    t = trained(corpus, models.BPE(unk_token="<unk>"), pre_tokenizer=pre,
                normalizer=normalizers.Sequence([normalizers.NFKD(), normalizers.Prepend("_")]),
                specials=["<unk>", "<s>", "</s>"])
    t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")),
                                                    ("<s>", t.token_to_id("<s>")))
    t.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    cases["splits"] = t

    # byte-level with the GPT-2 regex, add_prefix_space, ignore_merges, a two-id template
    t = trained(corpus, models.BPE(ignore_merges=True),
                pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                vocab_size=400, specials=["<|endoftext|>", "<bos>"])
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<bos> <|endoftext|> $A <|endoftext|>",
                                      special_tokens=[("<bos>", t.token_to_id("<bos>")),
                                                      ("<|endoftext|>",
                                                       t.token_to_id("<|endoftext|>"))])])
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    t.add_tokens([AddedToken("hello world", normalized=True), AddedToken(" worlds")])
    cases["bytelevel_regex"] = t

    # literal splits (Removed, inverted), CharDelimiterSplit, Prepend/Replace, Strip decoders
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[A-Za-z\u2581]+"), behavior="removed", invert=True),
        pre_tokenizers.CharDelimiterSplit("x"),
        pre_tokenizers.WhitespaceSplit(),
    ])
    t = trained(corpus, models.BPE(unk_token="<unk>", byte_fallback=True), pre_tokenizer=pre,
                normalizer=normalizers.Sequence([normalizers.Prepend("\u2581"),
                                                 normalizers.Replace(" ", "\u2581")]),
                specials=["<unk>"])
    # (a Strip with stop > 0 makes HF panic on an empty text, so only start here)
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.Fuse(),
                                   decoders.Strip(" ", 2, 0)])
    cases["literal_splits"] = t
    return cases


def write_synthetic(root):
    corpus, sample = corpus_texts(root)
    base = os.path.join(FIXTURES, "synthetic")
    for name, tok in synthetic_cases(corpus).items():
        out_dir = os.path.join(base, name)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tok.to_str())
        texts = TEXTS + sample
        with open(os.path.join(out_dir, "encode.jsonl"), "w", encoding="utf-8") as f:
            for text in texts:
                for special in (False, True):
                    ids = tok.encode(text, add_special_tokens=special).ids
                    f.write(json.dumps({"text": text, "add_special_tokens": special, "ids": ids},
                                       ensure_ascii=False, separators=(",", ":")) + "\n")
        with open(os.path.join(out_dir, "decode.jsonl"), "w", encoding="utf-8") as f:
            for text in texts[:len(TEXTS)]:
                ids = tok.encode(text, add_special_tokens=True).ids
                for skip in (False, True):
                    f.write(json.dumps({"ids": ids, "skip_special_tokens": skip,
                                        "text": tok.decode(ids, skip_special_tokens=skip)},
                                       ensure_ascii=False, separators=(",", ":")) + "\n")
        print(f"{out_dir}: {2 * len(texts)} encodings")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--shared", default=os.environ.get("LLFC_SHARED", "../shared"))
    args = ap.parse_args()
    root = os.path.join(args.shared, "tokenizers")
    write_synthetic(root)
    names = sorted(d for d in os.listdir(root)
                   if os.path.isfile(os.path.join(root, d, "tokenizer.json")))
    for name in names:
        path = os.path.join(root, name, "tokenizer.json")
        tok = Tokenizer.from_file(path)
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        with open(os.path.join(root, name, "expected_public_special.jsonl"), encoding="utf-8") as f:
            expected = [json.loads(l)["ids"] for l in f if l.strip()]
        seqs = [ids[:40] for ids in expected[::12]] + crafted(tok, tj)
        out_dir = os.path.join(FIXTURES, name)
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, "decode.jsonl")
        with open(out, "w", encoding="utf-8") as f:
            for ids in seqs:
                for skip in (False, True):
                    text = tok.decode(ids, skip_special_tokens=skip)
                    f.write(json.dumps({"ids": ids, "skip_special_tokens": skip, "text": text},
                                       ensure_ascii=False, separators=(",", ":")) + "\n")
        print(f"{out}: {2 * len(seqs)} lines")


if __name__ == "__main__":
    main()
