#!/usr/bin/env python3
"""gen_unicode_tables.py - write runtime/tok_unicode.c, the Unicode tables of the tokenizer.

    python3 tools/gen_unicode_tables.py > runtime/tok_unicode.c

Needs Python 3.11 (its unicodedata is Unicode 14.0.0, the version of PCRE2 10.42's tables),
perl (Unicode::UCD, for property sets and ages), and the PyPI package unicodedata2 at 16.0.0
and 17.0.0: an installed one of the right version is used, else the wheel is fetched once
with `pip download` into ~/.cache/llfc and loaded from there.

What the tables hold, per code point:
  - canonical combining class, full canonical and compatibility decompositions, NFC/NFKC
    quick-check flags and a "combining mark" flag (NFC NFD NFKC NFKD StripAccents);
  - the canonical composition pairs (a, b) -> composite (NFC, NFKC);
  - the full lowercase mapping (Lowercase);
  - White_Space, the `\\w` of Rust's regex crate, punctuation and numeric classes
    (added-token rules; Punctuation, BertPreTokenizer, Digits pre-tokenizers);
  - what Unicode 15 and 16 assigned, by general category (regex classes).

Unicode versions: ids equal to HF's need each table at the version HF's code has for it
(tokenizers 0.23.3, measured on every code point):
  - normalization: the crate `unicode-normalization-alignments` 0.1.12, Unicode 9.0.0. A
    character assigned after 9.0 is to it a starter without decomposition (HF's NFD leaves
    "a\u0301\u1DFA" as is; its NFC does not compose U+11935 U+11930). We take Python's data
    for the code points assigned in 9.0 (normalization stability: it has not changed since);
    StripAccents' marks also as of 9.0 (MARKS_IN_9 lists the category changes since);
  - Split/Replace regexes: Oniguruma, Unicode 16.0 (a 16.0 letter such as U+13460 is \\p{L}
    there, a 17.0 one is not). Ours run on PCRE2 10.42 (Unicode 14.0), so the characters
    15.0 and 16.0 assigned are listed (tok_unew_ranges) for tok_regex_translate to add to
    \\p{L}, \\p{N}, ...; Rust's regex crate (single_word's \\w) is also 16.0;
  - Rust's std (char::to_lowercase, is_numeric): Unicode 17.0. Lowercase: Python's mapping,
    plus, for the capitals assigned since 14.0, the small letter of the same name (which is
    exactly what Rust gives for all 55 of them);
  - Punctuation/BertPreTokenizer: the crate unicode_categories, Unicode 8.0 (U+111DB of 8.0
    is punctuation to it, U+2E43 of 9.0 is not; PUNCT_IN_8 lists later category changes).
"""
import glob
import importlib.util
import os
import subprocess
import sys
import unicodedata
import zipfile


def load_ucd(version):
    """The unicodedata2 module of a given Unicode version."""
    try:
        import unicodedata2
        if unicodedata2.unidata_version == version:
            return unicodedata2
    except ImportError:
        pass
    cache = os.path.join(os.path.expanduser("~"), ".cache", "llfc", "unicodedata2-" + version)
    sos = glob.glob(os.path.join(cache, "unicodedata2*.so"))
    if not sos:
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", cache,
                        "unicodedata2==" + version], check=True)
        for whl in glob.glob(os.path.join(cache, "*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(cache)
        sos = glob.glob(os.path.join(cache, "unicodedata2*.so"))
    spec = importlib.util.spec_from_file_location("unicodedata2", sos[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.unidata_version == version, mod.unidata_version
    return mod


ONIG_UCD = load_ucd("16.0.0")  # Oniguruma and Rust's regex crate
RUST_UCD = load_ucd("17.0.0")  # Rust's std

NORMALIZATION_AGE = "9.0"  # the Unicode version of HF's normalization tables
MAX_CP = 0x110000
HANGUL_S_BASE, HANGUL_S_COUNT = 0xAC00, 11172

FLAG_NFC_NO = 1
FLAG_NFC_MAYBE = 2
FLAG_NFKC_NO = 4
FLAG_NFKC_MAYBE = 8
FLAG_MARK = 16
# General categories that changed between Unicode 9.0 (HF's is_combining_mark) and Python's:
# U+1CF2 U+1CF3 were Mc (Lo since 10.0), U+111C9 was Po (Mn since 11.0).
MARKS_IN_9 = {0x1CF2: True, 0x1CF3: True, 0x111C9: False}
# and between Unicode 8.0 (HF's is_punctuation) and Python's: U+166D was Po (So since 12.0).
PUNCT_IN_8 = {0x166D: True, 0x111C9: True}


def perl_set(prop):
    """Set of code points with a Unicode property, from Perl's Unicode::UCD inversion list."""
    out = subprocess.run(
        ["perl", "-MUnicode::UCD=prop_invlist", "-e",
         'print join(",", prop_invlist("%s"))' % prop],
        check=True, capture_output=True, text=True).stdout
    bounds = [int(x) for x in out.split(",") if x]
    assert bounds, "perl knows no property " + prop
    cps = set()
    for i in range(0, len(bounds), 2):
        hi = bounds[i + 1] if i + 1 < len(bounds) else MAX_CP
        cps.update(range(bounds[i], hi))
    return cps


def assigned_in(age):
    return perl_set("In=" + age)


def ranges(cps):
    """Sorted [lo, hi] ranges covering a set of code points."""
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def main():
    if unicodedata.unidata_version != "14.0.0":
        sys.exit("needs Python's unicodedata at 14.0.0 (PCRE2 10.42's version; Python 3.11), "
                 "not " + unicodedata.unidata_version)
    old = assigned_in(NORMALIZATION_AGE)
    # sanity: a Unicode-9 character is in, a Unicode-14 one is out
    assert 0x1E944 in old and 0x1DFA not in old and 0x11930 not in old

    records = {(0, 0, (), ()): 0}
    record_list = [(0, 0, (), ())]
    decomp = []          # flat code points of all decompositions
    decomp_index = {}    # tuple -> offset
    prop_of = [0] * MAX_CP
    compositions = {}    # (a, b) -> composite
    second_of_pair = set()

    def dec_offset(seq):
        if not seq:
            return 0
        if seq not in decomp_index:
            decomp_index[seq] = len(decomp)
            decomp.extend(seq)
        return decomp_index[seq]

    # composition pairs first: they decide the "maybe" flags
    for cp in old:
        if 0xD800 <= cp < 0xE000 or HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT:
            continue
        ch = chr(cp)
        raw = unicodedata.decomposition(ch)
        if not raw or raw.startswith("<"):
            continue
        parts = [int(p, 16) for p in raw.split()]
        if len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch:
            compositions[(parts[0], parts[1])] = cp
            second_of_pair.add(parts[1])
    for t in range(0x1161, 0x1176):   # Hangul V and T jamo compose with what precedes them
        second_of_pair.add(t)
    for t in range(0x11A8, 0x11C3):
        second_of_pair.add(t)

    for cp in sorted(old):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        hangul = HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT
        ccc = unicodedata.combining(ch)
        flags = 0
        canon = compat = ()
        if not hangul:  # Hangul syllables are decomposed algorithmically
            nfd = tuple(ord(c) for c in unicodedata.normalize("NFD", ch))
            nfkd = tuple(ord(c) for c in unicodedata.normalize("NFKD", ch))
            canon = nfd if nfd != (cp,) else ()
            compat = nfkd if nfkd != (cp,) else ()
        if unicodedata.normalize("NFC", ch) != ch:
            flags |= FLAG_NFC_NO
        if unicodedata.normalize("NFKC", ch) != ch:
            flags |= FLAG_NFKC_NO
        if cp in second_of_pair:
            flags |= FLAG_NFC_MAYBE | FLAG_NFKC_MAYBE
        if MARKS_IN_9.get(cp, unicodedata.category(ch).startswith("M")):
            flags |= FLAG_MARK
        key = (ccc, flags, canon, compat)
        if key not in records:
            records[key] = len(record_list)
            record_list.append(key)
            dec_offset(canon)
            dec_offset(compat)
        prop_of[cp] = records[key]

    # two-stage lookup: stage1[cp >> 8] -> block, stage2[block * 256 + (cp & 255)] -> record
    blocks = {}
    stage1 = []
    stage2 = []
    for hi in range(MAX_CP >> 8):
        blk = tuple(prop_of[hi << 8:(hi + 1) << 8])
        if blk not in blocks:
            blocks[blk] = len(blocks)
            stage2.extend(blk)
        stage1.append(blocks[blk])

    lower = []
    lower_data = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        low = chr(cp).lower()
        if unicodedata.category(chr(cp)) == "Cn" and RUST_UCD.category(chr(cp)) in ("Lu", "Lt"):
            try:  # a capital Python does not know yet: its small letter, by name
                low = RUST_UCD.lookup(RUST_UCD.name(chr(cp)).replace("CAPITAL", "SMALL"))
            except KeyError:
                pass
        if low != chr(cp):
            lower.append((cp, len(lower_data), len(low)))
            lower_data.extend(ord(c) for c in low)

    w = sys.stdout.write
    w("/* tok_unicode.c - Unicode tables of the tokenizer. GENERATED by tools/gen_unicode_tables.py:\n")
    w(" * do not edit; rerun the script.\n")
    w(" *\n")
    w(" * Normalization data: Python %s unicodedata (Unicode %s) restricted to the code points\n"
      % (sys.version.split()[0], unicodedata.unidata_version))
    w(" * assigned in Unicode %s, the version of the tables of `unicode-normalization-alignments`\n"
      % NORMALIZATION_AGE)
    w(" * 0.1.12, which Hugging Face tokenizers normalizes with. Lowercase and numeric: Unicode\n"
      " * %s (Rust's std). Regex classes: what Unicode %s (Oniguruma's) assigns beyond\n"
      " * PCRE2's %s. Punctuation: Unicode 8.0 (the unicode_categories crate).\n"
      % (RUST_UCD.unidata_version, ONIG_UCD.unidata_version, unicodedata.unidata_version))
    w(" */\n#include \"tok_internal.h\"\n\n")
    w("const char tok_unicode_version[] = \"%s (normalization as of %s)\";\n\n"
      % (unicodedata.unidata_version, NORMALIZATION_AGE))

    def emit(decl, values, per_line=16, fmt="%d"):
        w(decl + " = {\n")
        for i in range(0, len(values), per_line):
            w("    " + ", ".join(fmt % v for v in values[i:i + per_line]) + ",\n")
        w("};\n\n")

    emit("const uint16_t tok_uprop_stage1[%d]" % len(stage1), stage1)
    emit("const uint16_t tok_uprop_stage2[%d]" % len(stage2), stage2, 32)
    w("const TokUProp tok_uprops[%d] = {\n" % len(record_list))
    for ccc, flags, canon, compat in record_list:
        w("    {%d, %d, %d, %d, %d, %d},\n" % (ccc, flags, len(canon), len(compat),
                                           dec_offset(canon), dec_offset(compat)))
    w("};\n\n")
    emit("const uint32_t tok_udecomp[%d]" % max(1, len(decomp)), decomp or [0], 12, "0x%X")
    pairs = sorted(compositions.items())
    emit("const uint64_t tok_ucompose_keys[%d]" % len(pairs),
         [(a << 21) | b for (a, b), _ in pairs], 6, "0x%XULL")
    emit("const uint32_t tok_ucompose_vals[%d]" % len(pairs), [c for _, c in pairs], 12, "0x%X")
    w("const size_t tok_ucompose_count = %d;\n\n" % len(pairs))
    emit("const uint32_t tok_ulower_keys[%d]" % len(lower), [c for c, _, _ in lower], 12, "0x%X")
    emit("const uint16_t tok_ulower_offs[%d]" % len(lower), [o for _, o, _ in lower], 16)
    emit("const uint8_t tok_ulower_lens[%d]" % len(lower), [n for _, _, n in lower], 32)
    emit("const uint32_t tok_ulower_data[%d]" % len(lower_data), lower_data, 12, "0x%X")
    w("const size_t tok_ulower_count = %d;\n\n" % len(lower))

    # Rust's char::is_whitespace and regex `\s` (White_Space), regex `\w` (Alphabetic, marks,
    # decimal digits, connector punctuation, Join_Control): what HF's AddedVocabulary tests for
    # lstrip/rstrip/single_word.
    # characters PCRE2 (Unicode 14) has as unassigned that Unicode 16 assigns
    gc_names = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd",
                "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc",
                "Cf", "Co"]
    new_by_gc = {g: set() for g in gc_names}
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        if unicodedata.category(ch) == "Cn" and ONIG_UCD.category(ch) != "Cn":
            new_by_gc[ONIG_UCD.category(ch)].add(cp)
    w("const char *const tok_ugc_names[%d] = {%s};\n\n"
      % (len(gc_names), ", ".join('"%s"' % g for g in gc_names)))
    triples = [(lo, hi, i) for i, g in enumerate(gc_names) for lo, hi in ranges(new_by_gc[g])]
    w("/* [lo, hi, index into tok_ugc_names]: unassigned in Unicode 14, assigned in 16 */\n")
    emit("const uint32_t tok_unew_ranges[%d][3]" % len(triples),
         ["{0x%X, 0x%X, %d}" % t for t in triples], 4, "%s")
    w("const size_t tok_unew_count = %d;\n\n" % len(triples))

    space = ranges(perl_set("White_Space"))
    new_word = set()
    for g in ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "Pc"):
        new_word |= new_by_gc[g]
    word = ranges(perl_set("Alphabetic") | perl_set("gc=M") | perl_set("gc=Nd")
                  | perl_set("gc=Pc") | perl_set("Join_Control") | new_word)
    emit("const uint32_t tok_uspace_ranges[%d]" % (2 * len(space)),
         [x for r in space for x in r], 12, "0x%X")
    w("const size_t tok_uspace_count = %d;\n\n" % len(space))
    emit("const uint32_t tok_uword_ranges[%d]" % (2 * len(word)),
         [x for r in word for x in r], 12, "0x%X")
    w("const size_t tok_uword_count = %d;\n\n" % len(word))

    # HF's Punctuation and BertPreTokenizer test char::is_punctuation of the crate
    # unicode_categories 0.1, whose tables are Unicode 8.0 (U+111DB of 8.0 is punctuation to
    # it, U+2E43 of 9.0 is not); Digits tests Rust's char::is_numeric (Unicode 16).
    punct = ranges({cp for cp in perl_set("In=8.0") if not 0xD800 <= cp < 0xE000
                    and PUNCT_IN_8.get(cp, unicodedata.category(chr(cp))[0] == "P")})
    numeric = ranges({cp for cp in range(MAX_CP) if not 0xD800 <= cp < 0xE000
                      and RUST_UCD.category(chr(cp))[0] == "N"})
    emit("const uint32_t tok_upunct_ranges[%d]" % (2 * len(punct)),
         [x for r in punct for x in r], 12, "0x%X")
    w("const size_t tok_upunct_count = %d;\n\n" % len(punct))
    emit("const uint32_t tok_unumeric_ranges[%d]" % (2 * len(numeric)),
         [x for r in numeric for x in r], 12, "0x%X")
    w("const size_t tok_unumeric_count = %d;\n" % len(numeric))


if __name__ == "__main__":
    main()
