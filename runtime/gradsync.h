/* gradsync.h - data parallel's gradient reduction, a bucket at a time, on a thread of its own,
 * so that it overlaps the rest of the backward pass (what DDP's buckets do).
 *
 *     GradSync *s = gradsync_new(group, tensors, n, bucket_of, n_buckets);
 *     backward: as each layer's gradients are final, gradsync_post(s, bucket)
 *     gradsync_wait(s, &stats, err, errlen);   every bucket reduced (those not posted, now)
 *
 * A bucket's tensors that every rank sums (owner -1) travel as one message; those with an
 * owner (ZeRO-2) go to it one by one. Every rank must post the same buckets in the same order
 * (they do: the plan's), since each is a collective over the TCP group. The sums are the ones
 * dist_allreduce_sum / dist_reduce_sum_to give, bit for bit, whatever the bucketing.
 */
#ifndef LLFC_GRADSYNC_H
#define LLFC_GRADSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"

typedef struct {
    float *grad;
    int64_t n;
    int owner; /* -1: summed on every rank; else only at that rank (ZeRO-2) */
} GradSyncTensor;

typedef struct {
    int64_t steps, buckets;
    double busy_s;   /* the thread's time in collectives */
    double waited_s; /* the trainer's time in gradsync_wait: what was not hidden */
} GradSyncStats;

typedef struct GradSync GradSync;

/* tensor i belongs to bucket bucket_of[i] in [0, n_buckets). The arrays are copied. */
GradSync *gradsync_new(DistGroup *g, const GradSyncTensor *t, size_t n, const int32_t *bucket_of,
                       int32_t n_buckets);
void gradsync_free(GradSync *s);

/* Bucket b's gradients are final for this step: reduce them (on the thread). */
void gradsync_post(GradSync *s, int32_t bucket);

/* Post the buckets not posted this step (in bucket order), wait for all, and start a new step.
 * Fails with the first collective's error. */
bool gradsync_wait(GradSync *s, char *err, size_t errlen);

const GradSyncStats *gradsync_stats(const GradSync *s);

#endif
