/* gradsync.c - a thread that reduces posted gradient buckets in order. See gradsync.h. */
#include "gradsync.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct GradSync {
    DistGroup *group;
    GradSyncTensor *t;
    int32_t *bucket_of;
    size_t n;
    int32_t n_buckets;
    float *pack;          /* one bucket's summed-everywhere tensors, back to back */
    int32_t *queue;       /* buckets posted this step, in order */
    int32_t posted, done; /* queue[0, posted) posted; [0, done) reduced */
    bool *was_posted;
    bool failed, quit;
    char err[ERR_LEN];
    GradSyncStats stats;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;  /* a bucket was posted, or quit */
    pthread_cond_t idle;  /* a bucket was reduced */
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* One bucket: its summed-everywhere tensors packed into one allreduce, the others to their
 * owners one by one. */
static bool reduce_bucket(GradSync *s, int32_t b, char *err, size_t errlen) {
    int64_t packed = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->bucket_of[i] == b && s->t[i].owner < 0) {
            memcpy(s->pack + packed, s->t[i].grad, (size_t)s->t[i].n * sizeof(float));
            packed += s->t[i].n;
        }
    if (packed && !dist_allreduce_sum(s->group, s->pack, (size_t)packed, err, errlen)) return false;
    packed = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->bucket_of[i] != b) continue;
        if (s->t[i].owner < 0) {
            memcpy(s->t[i].grad, s->pack + packed, (size_t)s->t[i].n * sizeof(float));
            packed += s->t[i].n;
        } else if (!dist_reduce_sum_to(s->group, s->t[i].owner, s->t[i].grad, (size_t)s->t[i].n, err, errlen)) {
            return false;
        }
    }
    return true;
}

static void *run_thread(void *arg) {
    GradSync *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && s->done == s->posted) pthread_cond_wait(&s->wake, &s->mu);
        if (s->quit) break;
        int32_t b = s->queue[s->done];
        bool skip = s->failed; // after a failure the group is broken: let the waiter see it
        pthread_mutex_unlock(&s->mu);
        char err[ERR_LEN] = "";
        double t = now_s();
        bool ok = skip || reduce_bucket(s, b, err, sizeof err);
        double dt = now_s() - t;
        pthread_mutex_lock(&s->mu);
        if (!ok && !s->failed) s->failed = true, memcpy(s->err, err, sizeof err);
        s->stats.busy_s += dt;
        s->stats.buckets++;
        s->done++;
        pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

GradSync *gradsync_new(DistGroup *g, const GradSyncTensor *t, size_t n, const int32_t *bucket_of,
                       int32_t n_buckets) {
    GradSync *s = xcalloc(1, sizeof *s);
    s->group = g, s->n = n, s->n_buckets = n_buckets;
    s->t = xcalloc(n + 1, sizeof *s->t);
    s->bucket_of = xcalloc(n + 1, sizeof *s->bucket_of);
    memcpy(s->t, t, n * sizeof *t);
    memcpy(s->bucket_of, bucket_of, n * sizeof *bucket_of);
    int64_t *size = xcalloc((size_t)n_buckets + 1, sizeof *size), widest = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].owner < 0) size[bucket_of[i]] += t[i].n;
    for (int32_t b = 0; b < n_buckets; b++) widest = size[b] > widest ? size[b] : widest;
    free(size);
    s->pack = xmalloc(((size_t)widest + 1) * sizeof *s->pack);
    s->queue = xcalloc((size_t)n_buckets + 1, sizeof *s->queue);
    s->was_posted = xcalloc((size_t)n_buckets + 1, sizeof *s->was_posted);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_create(&s->thread, NULL, run_thread, s);
    return s;
}

void gradsync_free(GradSync *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->idle);
    free(s->t), free(s->bucket_of), free(s->pack), free(s->queue), free(s->was_posted);
    free(s);
}

void gradsync_post(GradSync *s, int32_t bucket) {
    pthread_mutex_lock(&s->mu);
    if (bucket >= 0 && bucket < s->n_buckets && !s->was_posted[bucket]) {
        s->was_posted[bucket] = true;
        s->queue[s->posted++] = bucket;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
}

bool gradsync_wait(GradSync *s, char *err, size_t errlen) {
    for (int32_t b = 0; b < s->n_buckets; b++) gradsync_post(s, b); // no-op for the posted ones
    double t = now_s();
    pthread_mutex_lock(&s->mu);
    while (s->done < s->posted) pthread_cond_wait(&s->idle, &s->mu);
    bool ok = !s->failed;
    if (!ok) errf(err, errlen, "%s", s->err);
    s->posted = s->done = 0;
    memset(s->was_posted, 0, (size_t)s->n_buckets * sizeof *s->was_posted);
    s->stats.steps++;
    s->stats.waited_s += now_s() - t;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

const GradSyncStats *gradsync_stats(const GradSync *s) { return &s->stats; }
