/* schedule.c - total steps, warmup and LambdaLR factors as transformers computes them. */
#include "schedule.h"

#include <math.h>
#include <string.h>

#include "util.h"

static const char *const type_names[] = {"linear", "cosine", "constant", "constant_with_warmup",
                                         "cosine_with_min_lr"};

bool schedule_type_parse(const char *name, ScheduleType *out) {
    for (int i = 0; i < (int)(sizeof type_names / sizeof *type_names); i++)
        if (strcmp(name, type_names[i]) == 0) {
            *out = (ScheduleType)i;
            return true;
        }
    return false;
}

const char *schedule_type_name(ScheduleType t) { return type_names[t]; }

// --- steps

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t schedule_updates_per_epoch(int64_t num_examples, int64_t world, int64_t batch,
                                   int64_t accum) {
    int64_t per_rank = ceil_div(num_examples, world);
    int64_t len_dl = ceil_div(per_rank, batch);
    int64_t u = ceil_div(len_dl, accum);
    return u > 1 ? u : 1;
}

int64_t schedule_total_steps(int64_t num_examples, int64_t world, int64_t batch, int64_t accum,
                             double num_train_epochs, int64_t max_steps) {
    if (max_steps > 0) return max_steps;
    int64_t u = schedule_updates_per_epoch(num_examples, world, batch, accum);
    return (int64_t)ceil(num_train_epochs * (double)u);
}

int64_t schedule_num_epochs(int64_t num_examples, int64_t world, int64_t batch, int64_t accum,
                            double num_train_epochs, int64_t max_steps) {
    int64_t u = schedule_updates_per_epoch(num_examples, world, batch, accum);
    if (max_steps > 0) return max_steps / u + (max_steps % u > 0);
    return (int64_t)ceil(num_train_epochs);
}

double schedule_num_train_samples(int64_t num_examples, int64_t world, int64_t batch,
                                  int64_t accum, double num_train_epochs, int64_t max_steps) {
    if (max_steps > 0) return (double)(max_steps * batch * accum * world);
    return (double)num_examples * num_train_epochs;
}

int64_t schedule_warmup_steps(int64_t total_steps, double warmup_steps, double warmup_ratio) {
    double w = warmup_ratio > 0 ? warmup_ratio : warmup_steps; /* 5.x: ratio replaces steps */
    if (w >= 1) return (int64_t)w;
    return (int64_t)ceil((double)total_steps * w);
}

// --- factors

bool schedule_init(Schedule *s, ScheduleType type, int64_t total_steps, int64_t warmup_steps,
                   const char *const *kw_keys, const double *kw_vals, size_t n_kw,
                   double peak_lr, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->type = type;
    s->total_steps = total_steps;
    s->warmup_steps = warmup_steps;
    s->num_cycles = 0.5;
    bool have_min_lr = false, have_rate = false;
    double min_lr = 0;
    for (size_t i = 0; i < n_kw; i++) {
        const char *k = kw_keys[i];
        bool cosine = type == SCHED_COSINE || type == SCHED_COSINE_WITH_MIN_LR;
        if (strcmp(k, "num_cycles") == 0 && cosine) {
            s->num_cycles = kw_vals[i];
        } else if (strcmp(k, "min_lr") == 0 && type == SCHED_COSINE_WITH_MIN_LR) {
            have_min_lr = true;
            min_lr = kw_vals[i];
        } else if (strcmp(k, "min_lr_rate") == 0 && type == SCHED_COSINE_WITH_MIN_LR) {
            have_rate = true;
            s->min_lr_rate = kw_vals[i];
        } else {
            return errf(err, errlen,
                        "lr_scheduler_kwargs: '%s' is not an argument of the %s schedule; it "
                        "takes %s",
                        k, type_names[type],
                        type == SCHED_COSINE_WITH_MIN_LR ? "num_cycles and one of min_lr, min_lr_rate"
                        : type == SCHED_COSINE           ? "num_cycles"
                                                         : "none");
        }
    }
    if (type == SCHED_COSINE_WITH_MIN_LR) {
        if (have_min_lr && have_rate)
            return errf(err, errlen, "lr_scheduler_kwargs: give only one of min_lr or min_lr_rate");
        if (!have_min_lr && !have_rate)
            return errf(err, errlen, "lr_scheduler_type cosine_with_min_lr needs min_lr or "
                                     "min_lr_rate in lr_scheduler_kwargs, e.g. {min_lr_rate: 0.1}");
        if (have_min_lr) s->min_lr_rate = min_lr / peak_lr;
    }
    return true;
}

static double max1(int64_t x) { return (double)(x > 1 ? x : 1); }

double schedule_factor(const Schedule *s, int64_t step) {
    int64_t w = s->warmup_steps, T = s->total_steps;
    if (s->type == SCHED_CONSTANT) return 1.0;
    if (step < w) return (double)step / max1(w);
    switch (s->type) {
    case SCHED_LINEAR: {
        double f = (double)(T - step) / max1(T - w);
        return f > 0 ? f : 0.0;
    }
    case SCHED_COSINE:
    case SCHED_COSINE_WITH_MIN_LR: {
        double p = (double)(step - w) / max1(T - w);
        double f = 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * p));
        if (s->type == SCHED_COSINE_WITH_MIN_LR) f = f * (1 - s->min_lr_rate) + s->min_lr_rate;
        return f > 0 ? f : 0.0;
    }
    default:
        return 1.0;
    }
}

bool schedule_from_recipe(Schedule *s, const Recipe *r, int64_t total_steps, char *err,
                          size_t errlen) {
    ScheduleType t;
    if (!schedule_type_parse(R_STR(r, lr_scheduler_type), &t))
        return errf(err, errlen, "lr_scheduler_type %s is not supported yet", R_STR(r, lr_scheduler_type));
    int64_t w = schedule_warmup_steps(total_steps, R_FLOAT(r, warmup_steps), R_FLOAT(r, warmup_ratio));
    const NumMap *kw = &r->v[RK_lr_scheduler_kwargs].map;
    size_t n = R_NULL(r, lr_scheduler_kwargs) ? 0 : kw->n;
    return schedule_init(s, t, total_steps, w, (const char *const *)kw->keys, kw->vals, n,
                         R_FLOAT(r, learning_rate), err, errlen);
}
