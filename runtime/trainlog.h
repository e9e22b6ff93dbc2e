/* trainlog.h - what a run tells people: the live progress line, LLaMA-Factory's
 * trainer_log.jsonl, Hugging Face's trainer_state.json and *_results.json, byte for byte.
 *
 * Python writes all of these with json.dumps, so numbers are printed as Python prints them:
 * ints as ints, floats as repr() (shortest round-trip, "1e-05", "2.0", "1e+16"), and
 * rounding is Python's round(). The shapes (transformers 5.6, LLaMA-Factory 0.9.5):
 *
 *   log_history entry (Trainer._maybe_log_save_evaluate, Trainer.log), one per logging step:
 *       {"loss": mean loss since the last log, "grad_norm": norm before clipping,
 *        "learning_rate": the rate this update used, "epoch": e + batches / batches_per_epoch,
 *        "step": global_step}
 *     evaluation: {"eval_loss", "eval_runtime", "eval_samples_per_second",
 *                  "eval_steps_per_second", "epoch", "step"}
 *     the end of training: {"train_runtime" (round 4), "train_samples_per_second" (round 3),
 *                           "train_steps_per_second" (round 3), "total_flos", "train_loss",
 *                           "epoch", "step"}
 *   trainer_log.jsonl (LLaMA-Factory LogCallback.on_log), one line per log_history entry:
 *       {"current_steps", "total_steps", "loss", "eval_loss", "predict_loss", "reward",
 *        "accuracy", "lr", "epoch", "percentage" (round 2), "elapsed_time", "remaining_time"
 *        (str(timedelta)), "throughput" (round 2), "total_tokens"}, absent values left out;
 *        throughput and total_tokens only when state.num_input_tokens_seen != 0, i.e. when
 *        tokens are counted (include_num_input_tokens_seen; off by default, as in LF).
 *   trainer_state.json (TrainerState.save_to_json): json.dumps(indent=2, sort_keys=True).
 *   train_results.json, all_results.json (Trainer.save_metrics): json.dump(indent=4,
 *       sort_keys=True); all_results.json merges every split's metrics.
 */
#ifndef LLFC_TRAINLOG_H
#define LLFC_TRAINLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

// --- Python-shaped values

typedef enum { LOGV_INT, LOGV_FLOAT, LOGV_STR, LOGV_BOOL, LOGV_NULL } LogKind;

typedef struct {
    char key[48];
    LogKind kind;
    int64_t i;  /* LOGV_INT, LOGV_BOOL */
    double f;   /* LOGV_FLOAT */
    char *s;    /* LOGV_STR, owned */
} LogItem;

/* A flat Python dict in insertion order (a log_history entry, a metrics dict). */
typedef struct {
    LogItem *items;
    int n, cap;
} LogRec;

void logrec_int(LogRec *r, const char *key, int64_t v);
void logrec_float(LogRec *r, const char *key, double v);
void logrec_str(LogRec *r, const char *key, const char *v);
const LogItem *logrec_get(const LogRec *r, const char *key); /* NULL if absent */
bool logrec_num(const LogRec *r, const char *key, double *out); /* int or float */
void logrec_copy(LogRec *dst, const LogRec *src);
void logrec_free(LogRec *r);

/* repr(x) of a Python float: shortest round-trip digits; fixed notation when the decimal
 * exponent is in [-4, 16), else d.ddde+XX; "NaN", "Infinity", "-Infinity" as json.dumps. */
void trainlog_py_repr(double x, char out[32]);
/* round(x, ndigits) as Python rounds a float (exact decimal value, ties to even). */
double trainlog_py_round(double x, int ndigits);
/* str(timedelta(seconds=int(s))): "0:00:05", "1 day, 2:03:04". */
void trainlog_timedelta(double seconds, char out[48]);

/* json.dumps(dict): {"a": 1, "b": 2.5} on one line. */
void trainlog_dumps(const LogRec *r, StrBuf *out);
/* json.dumps(dict, indent=indent, sort_keys=True), nested `level` deep (0 at top). */
void trainlog_dumps_indent(const LogRec *r, int indent, int level, StrBuf *out);

// --- trainer_state.json

typedef struct {
    double epoch;
    int64_t global_step, max_steps, logging_steps, eval_steps, save_steps, train_batch_size;
    int64_t num_train_epochs, num_input_tokens_seen;
    double total_flos;
    bool should_training_stop; /* stateful_callbacks.TrainerControl.args */
    LogRec *log_history;
    size_t n_log, cap_log;
} TrainerState;

void trainlog_state_append(TrainerState *st, const LogRec *entry); /* copies */
/* TrainerState.save_to_json's text. */
void trainlog_state_json(const TrainerState *st, StrBuf *out);
/* Read trainer_state.json text back (resume). False with "NAME:LINE:COL: ..." in err. */
bool trainlog_state_parse(TrainerState *st, const char *text, size_t len, const char *name,
                          char *err, size_t errlen);
void trainlog_state_free(TrainerState *st);

// --- the live log of a run

typedef struct {
    char *output_dir;       /* trainer_log.jsonl, *_results.json go here ("" = nowhere) */
    int64_t max_steps;
    double start_time;      /* seconds, same clock as the `now` arguments */
    FILE *progress;         /* where the progress line goes (NULL: nowhere) */
    bool tty;               /* progress is a terminal: one line rewritten in place */
    int line_len;           /* length of the line shown now (tty) */
} TrainLog;

/* Set up; progress goes to `progress` (stderr normally; a tty gets one updating line). */
void trainlog_init(TrainLog *tl, const char *output_dir, int64_t max_steps, double now,
                   FILE *progress);
void trainlog_free(TrainLog *tl);

/* LogCallback.on_log: one trainer_log.jsonl line for the last entry of st->log_history,
 * appended to OUTPUT_DIR/trainer_log.jsonl (and into *line if not NULL). */
bool trainlog_on_log(TrainLog *tl, const TrainerState *st, double now, StrBuf *line, char *err,
                     size_t errlen);
/* On resume from global_step: keep the trainer_log.jsonl lines whose current_steps <=
 * global_step (written atomically). LF keeps the dead run's later lines and appends after
 * them, so its log repeats steps; ours reads as if the run had never stopped. A missing file is
 * fine. */
bool trainlog_resume_jsonl(const char *output_dir, int64_t global_step, char *err, size_t errlen);

/* The same line without writing it anywhere. */
void trainlog_lf_line(const TrainLog *tl, const TrainerState *st, double now, StrBuf *out);

/* The training log entry for a logging step. grad_norm NAN leaves it out. */
void trainlog_train_entry(LogRec *e, double loss, double grad_norm, double lr, double epoch,
                          int64_t step);
/* The end-of-training metrics (speed_metrics("train", ...) + total_flos + train_loss), in HF's
 * order; epoch and step are added when it is appended to the history (Trainer.log). */
void trainlog_train_metrics(LogRec *m, double runtime, double num_samples, int64_t num_steps,
                            double total_flos, double train_loss);
/* Trainer.evaluate's metrics: eval_loss, then speed_metrics("eval", num_samples, num_steps =
 * ceil(num_samples / total_batch)). */
void trainlog_eval_metrics(LogRec *m, double eval_loss, double runtime, int64_t num_samples,
                           int64_t total_batch);

/* Trainer.log_metrics's console table ("***** train metrics *****", keys sorted, runtimes as
 * h:mm:ss.cc, total_flos in GF, floats rounded to 4). */
void trainlog_metrics_text(const char *split, const LogRec *m, StrBuf *out);

/* Trainer.save_state: OUTPUT_DIR/trainer_state.json, atomically. */
bool trainlog_save_state(const char *output_dir, const TrainerState *st, char *err, size_t errlen);

/* Trainer.save_metrics(split, metrics): SPLIT_results.json, merged into all_results.json.
 * Both written atomically. */
bool trainlog_save_metrics(const char *output_dir, const char *split, const LogRec *metrics,
                           char *err, size_t errlen);

/* The progress line: "step 12/100 (12%) | loss 2.3456 | lr 1.96e-04 | grad 0.812 | 1,234 tok/s |
 * 0:00:35 elapsed, 0:04:10 left". On a tty it rewrites one line; otherwise it prints a plain
 * line (the caller calls it at logging steps). tokens_per_s <= 0 is left out. */
void trainlog_progress(TrainLog *tl, int64_t step, double loss, double lr, double grad_norm,
                       double tokens_per_s, double now);
void trainlog_progress_text(const TrainLog *tl, int64_t step, double loss, double lr,
                            double grad_norm, double tokens_per_s, double now, StrBuf *out);
/* End the updating line (tty) with a newline. */
void trainlog_progress_done(TrainLog *tl);

#endif
