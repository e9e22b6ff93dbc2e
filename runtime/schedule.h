/* schedule.h - how many optimizer steps a run takes, and the learning rate at each one, as
 * transformers' Trainer and get_scheduler compute them.
 *
 * Total steps (Trainer.set_initial_training_values, transformers 5):
 *
 *     N  = training examples (rows after packing), W = world size (data-parallel ranks),
 *     B  = per_device_train_batch_size, A = gradient_accumulation_steps
 *     batches per rank per epoch  len_dl = ceil(ceil(N / W) / B)   (every rank gets
 *                                 ceil(N / W) rows: the distributed sampler pads by repeating)
 *     updates per epoch           U = max(1, ceil(len_dl / A))     (the last, short
 *                                 accumulation still makes an update)
 *     total steps                 max_steps if max_steps > 0, else ceil(num_train_epochs * U)
 *     epochs run                  ceil(max_steps / U) if max_steps > 0, else ceil(num_train_epochs)
 *
 * Warmup (transformers 5.6 TrainingArguments): a warmup_ratio that is set replaces warmup_steps
 * (__post_init__, deprecated spelling); then get_warmup_steps gives int(w) when w >= 1, else
 * ceil(total * w). The recipe cannot tell "warmup_ratio: 0" from absent, so a ratio of 0 counts
 * as absent here.
 *
 * Learning rate: a LambdaLR multiplies each parameter group's initial lr by factor(s), where s
 * is the number of optimizer steps already taken: the update number s+1 uses factor(s). With
 * w warmup steps and T total steps (transformers/optimization.py):
 *
 *     warmup (all but constant):  s < w:  s / max(1, w)
 *     linear                      max(0, (T - s) / max(1, T - w))
 *     cosine                      p = (s - w) / max(1, T - w);
 *                                 max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * p)))   num_cycles 0.5
 *     cosine_with_min_lr          the cosine factor f, then f * (1 - r) + r, r = min_lr_rate
 *                                 (or min_lr / lr); max(0, ...)
 *     constant                    1 (no warmup)
 *     constant_with_warmup        1 after warmup
 *
 * transformers 5 logs the rate the update used (read before the scheduler steps): at
 * global_step s the logged learning_rate is lr * factor(s - 1). (4.x logged lr * factor(s).)
 */
#ifndef LLFC_SCHEDULE_H
#define LLFC_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recipe.h"

typedef enum {
    SCHED_LINEAR,
    SCHED_COSINE,
    SCHED_CONSTANT,
    SCHED_CONSTANT_WITH_WARMUP,
    SCHED_COSINE_WITH_MIN_LR,
} ScheduleType;

typedef struct {
    ScheduleType type;
    int64_t total_steps;  /* T */
    int64_t warmup_steps; /* w */
    double num_cycles;    /* cosine kinds: 0.5 */
    double min_lr_rate;   /* cosine_with_min_lr: floor as a fraction of the peak lr */
} Schedule;

/* The type for a recipe's lr_scheduler_type; false if llfc does not implement it. */
bool schedule_type_parse(const char *name, ScheduleType *out);
const char *schedule_type_name(ScheduleType t);

/* Updates per epoch and total steps as above. num_examples >= 0; world, batch, accum >= 1. */
int64_t schedule_updates_per_epoch(int64_t num_examples, int64_t world, int64_t batch,
                                   int64_t accum);
int64_t schedule_total_steps(int64_t num_examples, int64_t world, int64_t batch, int64_t accum,
                             double num_train_epochs, int64_t max_steps);
/* Epochs the loop runs (Trainer's num_train_epochs after the computation above). */
int64_t schedule_num_epochs(int64_t num_examples, int64_t world, int64_t batch, int64_t accum,
                            double num_train_epochs, int64_t max_steps);

/* Samples the run processes, as train_samples_per_second counts them: N * num_train_epochs
 * (a float), or max_steps * B * A * W when max_steps > 0. */
double schedule_num_train_samples(int64_t num_examples, int64_t world, int64_t batch,
                                  int64_t accum, double num_train_epochs, int64_t max_steps);

/* Warmup steps from the recipe's warmup_steps and warmup_ratio. */
int64_t schedule_warmup_steps(int64_t total_steps, double warmup_steps, double warmup_ratio);

/* Build a schedule. kwargs are lr_scheduler_kwargs (num_cycles, min_lr, min_lr_rate; n may be
 * 0) and peak_lr the base learning rate (for min_lr). False with a message when the kwargs do
 * not fit the type (cosine_with_min_lr needs exactly one of min_lr, min_lr_rate). */
bool schedule_init(Schedule *s, ScheduleType type, int64_t total_steps, int64_t warmup_steps,
                   const char *const *kw_keys, const double *kw_vals, size_t n_kw,
                   double peak_lr, char *err, size_t errlen);

/* LambdaLR's factor after `step` optimizer steps (see above). */
double schedule_factor(const Schedule *s, int64_t step);

/* The schedule a recipe asks for (lr_scheduler_type, lr_scheduler_kwargs, warmup_steps,
 * warmup_ratio, learning_rate) over total_steps (schedule_total_steps). */
bool schedule_from_recipe(Schedule *s, const Recipe *recipe, int64_t total_steps, char *err,
                          size_t errlen);

#endif
