/* checkpoint.h - OUTPUT_DIR/checkpoint-N folders: written atomically, verified, resumed exactly.
 *
 * A checkpoint holds everything a run needs to continue as if it had never stopped:
 *
 *     checkpoint-N/
 *       adapter_model.safetensors, adapter_config.json   (lora)   \ written by the caller's
 *       or config.json, model.safetensors, ...           (full)   / write_model callback, so
 *                                                                   a checkpoint is also a
 *                                                                   folder PEFT/transformers load
 *       train_state.safetensors   fp32 master weights and AdamW moments of every trainable
 *                                 parameter: NAME, NAME.exp_avg, NAME.exp_avg_sq (F32, 1-D);
 *                                 __metadata__ llfc_optimizer_step
 *       trainer_state.json        Hugging Face's TrainerState (log_history, global_step, ...)
 *       llfc_checkpoint.json      written last: the data position, seeds, and every other
 *                                 file's size and SHA-256 (what makes the folder complete)
 *
 * Nothing else is needed: llfc's random numbers are counter-based (rng.h), so the seeds and
 * the position (epoch, micro-batch, row offset, global step) restore dropout masks and the
 * data order exactly; the learning rate is a function of the step (schedule.h).
 *
 * Saving (the sequence a crash at any point must survive):
 *   1. OUTPUT_DIR/.checkpoint-N.tmp is created (a stale one is removed first);
 *   2. every file is written into it and fsync'd; the manifest last;
 *   3. the folder is fsync'd and renamed to checkpoint-N (an existing checkpoint-N is moved
 *      aside first and removed after); OUTPUT_DIR is fsync'd;
 *   4. with save_total_limit, the oldest checkpoint-* folders beyond the limit are removed
 *      (Trainer._rotate_checkpoints: ordered by step number).
 * A kill before 3 leaves only a .tmp folder, which nothing reads and the next save removes;
 * the previous checkpoint-M is untouched.
 */
#ifndef LLFC_CHECKPOINT_H
#define LLFC_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "optim.h"
#include "trainlog.h"

#define CKPT_MANIFEST "llfc_checkpoint.json"
#define CKPT_STATE "train_state.safetensors"

/* Where the run is. Restored exactly on resume. */
typedef struct {
    int64_t global_step;    /* optimizer steps taken */
    int64_t epoch;          /* epochs completed */
    int64_t batch_in_epoch; /* micro-batches consumed in the current epoch */
    int64_t sample_offset;  /* rows consumed in the current epoch (this rank) */
    uint64_t seed;          /* recipe seed (LoRA init, dropout) */
    uint64_t data_seed;     /* data order seed */
    double loss_sum;        /* sum of logged losses so far (HF _total_loss_scalar, for train_loss) */
    int64_t tokens_seen;    /* input tokens so far */
    /* fp16's loss scaler (optim.h LossScaler; HF saves GradScaler's state too): 0 when the run
     * does not scale; a checkpoint without them reads back as 0 */
    double loss_scale;
    int64_t loss_scale_clean, skipped_steps;
} CkptPosition;

/* Write the model files (adapter or HF folder) into `dir`; false with err to abort the save. */
typedef bool (*CkptWriteModel)(void *ctx, const char *dir, char *err, size_t errlen);

typedef struct {
    const char *output_dir;
    const OptParam *params; /* trainable parameters (values are the fp32 master weights) */
    size_t n_params;
    const AdamW *opt;       /* NULL: no optimizer state (save_only_model; not resumable) */
    const TrainerState *state;
    const CkptPosition *pos;
    int64_t save_total_limit; /* <= 0: keep every checkpoint */
    CkptWriteModel write_model; /* may be NULL */
    void *ctx;
} CkptSave;

/* Save OUTPUT_DIR/checkpoint-{pos->global_step}. On failure the previous checkpoints are as
 * they were and err says what failed. *path_out (if not NULL) gets the folder, malloc'd. */
bool ckpt_save(const CkptSave *s, char **path_out, char *err, size_t errlen);

/* The checkpoint to resume from: `resume` is a folder, or "true" / "latest" for the complete
 * checkpoint-N with the largest N in output_dir. *path_out is malloc'd. Errors: the folder does
 * not exist; "true" and no complete checkpoint in output_dir. */
bool ckpt_resolve(const char *resume, const char *output_dir, char **path_out, char *err,
                  size_t errlen);

/* What a run starts from, by LLaMA-Factory's rule (hparams/parser.py get_train_args):
 *   resume_from_checkpoint set (not NULL/"")  -> ckpt_resolve;
 *   else, unless overwrite_output_dir, the latest complete checkpoint-N in output_dir is resumed
 *   (note says so), and an output_dir that holds a finished model but no checkpoint
 *   (adapter_model.safetensors, adapter_model.bin, model.safetensors(.index.json),
 *   pytorch_model.bin(.index.json)) is an error;
 *   else a fresh start: *path_out = NULL. */
bool ckpt_auto_resume(const char *output_dir, const char *resume, bool overwrite_output_dir,
                      char **path_out, char *note, size_t notelen, char *err, size_t errlen);

/* Largest complete checkpoint-N in dir (NULL if none). Folders without a manifest are skipped
 * (an interrupted save); *n_incomplete (if not NULL) counts them. */
char *ckpt_latest(const char *output_dir, int *n_incomplete);

/* Check the manifest and every file's size and SHA-256. */
bool ckpt_verify(const char *dir, char *err, size_t errlen);

/* Resume: verify, then restore the master weights into params[i].value (matched by name),
 * the optimizer moments and step into *opt (already optim_init'ed for the params with mine[i],
 * in order, or for all of them when mine is NULL: under ZeRO a rank reads only its own
 * moments), the trainer state (caller frees with trainlog_state_free) and the position. A
 * parameter missing from the checkpoint, an extra one, or a size mismatch is an error naming
 * it. A NULL value, and the moments of a parameter not mine, are checked but not read. */
bool ckpt_load(const char *dir, const OptParam *params, size_t n_params, const bool *mine, AdamW *opt,
               TrainerState *state, CkptPosition *pos, char *err, size_t errlen);

/* Remove checkpoint-* folders beyond `limit` (oldest first by step), and stale .tmp folders. */
bool ckpt_rotate(const char *output_dir, int64_t limit, char *err, size_t errlen);

/* Fault injection for tests: make the next ckpt_save stop (as if killed, leaving what it wrote)
 * after `stage` of its steps: 1 model files, 2 train_state, 3 trainer_state.json, 4 manifest,
 * 5 rename. -stage kills the process there with SIGKILL instead. 0 turns it off. */
void ckpt_test_fail_at(int stage);

#endif
