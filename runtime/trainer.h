/* trainer.h - a training run from a resolved recipe: load the model, tokenizer and data,
 * encode, build or read the plan, then steps (accumulation, clipping, schedule, AdamW),
 * logs, evaluation, checkpoints and resume, and the outputs the ecosystem reads.
 *
 * The CPU executor runs the step here; the CUDA executor will plug in at the same place.
 * Every other module does one job (dataset, encode, graph, exec_cpu, optim, schedule,
 * checkpoint, trainlog, plot, outputs); this file is the order they run in.
 */
#ifndef LLFC_TRAINER_H
#define LLFC_TRAINER_H

#include "payload.h"
#include "recipe.h"

/* Train. Messages go to stderr, the progress line to stdout. Returns the exit status:
 * 0 trained, 1 an input is wrong (the message says which), 70 the machine failed. */
int trainer_run(const Recipe *r, const Payload *p);

/* Print the plan this trainer would run (./run_sft --plan). */
int trainer_print_plan(const Recipe *r, const Payload *p);

#endif
