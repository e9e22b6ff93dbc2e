/* cmd_tokenize.h - `llfc tokenize`: text to token ids (and back) with a tokenizer.json, so
 * anyone can diff llfc's tokenizer against Hugging Face's on their own data.
 *
 *   llfc tokenize --tokenizer DIR [--special] < in.jsonl > ids.jsonl
 *   llfc tokenize --tokenizer DIR --decode [--skip-special] < ids.jsonl > text.jsonl
 *
 * Encoding reads one record per line: a JSON object {"text": "..."} (other keys ignored), or,
 * when the line is not a JSON object, the line itself as plain text (without its "\n"). It
 * writes {"ids": [...]} per line, in order. --special adds the tokenizer's special tokens
 * (HF's add_special_tokens=True; default False).
 * Decoding reads {"ids": [...]} (or a bare [...]) per line and writes {"text": "..."}, as HF's
 * decode(ids, skip_special_tokens); --skip-special drops special tokens.
 *
 * Exit status: 0 done, 1 bad input (the message names the line), 2 usage.
 */
#ifndef LLFC_CMD_TOKENIZE_H
#define LLFC_CMD_TOKENIZE_H

/* argv[0] is "tokenize". */
int cmd_tokenize(int argc, char **argv);

#endif
