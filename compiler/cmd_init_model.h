/* cmd_init_model.h - `llfc init-model`: a Hugging Face model folder with seeded random weights.
 *
 *   llfc init-model --family F --hidden H --layers L --heads N --kv-heads K --intermediate I
 *                   --vocab V [--head-dim D] [--tokenizer DIR] [--dtype bf16|f32] [--seed S]
 *                   [--max-positions P] [--tie-embeddings true|false] [--max-shard-size 5GB]
 *                   [--no-weights] -o DIR
 *
 * Writes DIR/config.json and generation_config.json as transformers writes them for the
 * family, model.safetensors (or model-0000K-of-0000N.safetensors + index past the shard size),
 * and the tokenizer files of --tokenizer. Weights are N(0, 0.02) from Philox keyed by
 * (seed, RNG_INIT_WEIGHTS + tensor number, element), norms 1 (0 for gemma's 1 + w form),
 * biases 0: the same folder for the same flags on any machine. Tensors are generated and
 * written one 4 MB chunk at a time, so Llama-3-8B's 16 GB of bf16 needs no more memory than a
 * tiny model. --no-weights leaves the safetensors out: a folder to compile a trainer against
 * (compiling reads config.json only), whose weights the same flags make later where it runs.
 *
 * Exit status: 0 written, 1 a value is wrong (the message says which), 2 usage.
 */
#ifndef LLFC_CMD_INIT_MODEL_H
#define LLFC_CMD_INIT_MODEL_H

/* argv[0] is "init-model". */
int cmd_init_model(int argc, char **argv);

#endif
