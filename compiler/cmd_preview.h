/* cmd_preview.h - `llfc preview`: the first training examples of a recipe as the trainer will
 * see them, printed as LLaMA-Factory prints them (print_data_example), or as JSON lines.
 *
 *   llfc preview recipe.yaml [-n N] [--json] [--eval] [key=value ...]
 *
 * Loads the recipe, its datasets (dataset.h), tokenizer (model_name_or_path) and template,
 * encodes (encode.h) and prints N rows (default 1):
 *   sft, kto  input_ids / inputs / label_ids / labels (labels: the decoded learned tokens)
 *   rm, dpo   chosen_input_ids / chosen_inputs / chosen_label_ids / chosen_labels, rejected_...
 *   pt        input_ids / inputs
 * each block after a "training example:" line (N = 1 is byte for byte LF's output for the same
 * recipe). --json writes one object per row instead: {"input_ids": [...], "labels": [...]}
 * (pairwise: chosen_* and rejected_*; kto: + kl_input_ids, kl_labels, kto_tag; packed rows:
 * + attention_mask, position_ids). --eval shows the eval split. key=value overrides recipe keys.
 * What was dropped or cut is summarized on stderr.
 *
 * Exit status: 0 done, 1 a problem with the recipe, data, tokenizer or template (the message
 * names it), 2 usage.
 */
#ifndef LLFC_CMD_PREVIEW_H
#define LLFC_CMD_PREVIEW_H

/* argv[0] is "preview". */
int cmd_preview(int argc, char **argv);

#endif
