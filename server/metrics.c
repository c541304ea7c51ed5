/* metrics.c - Prometheus text format 0.0.4 rendering of the server's counters (see metrics.h). */
#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SERIES 128

struct ds_metrics {
    pthread_mutex_t mu;
    struct {
        const char *route;
        int         status;
        unsigned long long n;
    } req[MAX_SERIES];
    int n_req;
    ds_hist http_seconds; /* request handling time, all routes but the waiting ones */
};

ds_metrics *ds_metrics_create(void) {
    ds_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    static const double le[DS_HIST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   1};
    memcpy(m->http_seconds.le, le, sizeof le);
    return m;
}

void ds_metrics_free(ds_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void ds_metrics_count(ds_metrics *m, const char *route, int status, double seconds) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && !(m->req[i].status == status && !strcmp(m->req[i].route, route))) i++;
    if (i == m->n_req && m->n_req < MAX_SERIES) {
        m->req[i].route = route;
        m->req[i].status = status;
        m->req[i].n = 0;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    bool waits = !strcmp(route, "/v1/generate") || !strcmp(route, "/v1/images/generations") ||
                 !strcmp(route, "/v1/jobs/{id}/events");
    if (!waits) {
        int b = 0;
        while (b < DS_HIST_BUCKETS && seconds > m->http_seconds.le[b]) b++;
        m->http_seconds.counts[b]++;
        m->http_seconds.sum += seconds;
        m->http_seconds.count++;
    }
    pthread_mutex_unlock(&m->mu);
}

typedef struct buf {
    char  *p;
    size_t len, cap;
    int    oom;
} buf;

static void put(buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static void hist(buf *b, const char *name, const char *help, const ds_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int i = 0; i < DS_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], cum);
    }
    cum += h->counts[DS_HIST_BUCKETS];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, cum, name, h->sum, name,
        (unsigned long long)h->count);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long pages = 0, rss = 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

char *ds_metrics_render(ds_metrics *m, ds_engine *e) {
    buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
    put(&b, "# HELP ditserve_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE ditserve_http_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_req; i++)
        put(&b, "ditserve_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->req[i].route, m->req[i].status,
            m->req[i].n);
    ds_hist hs = m->http_seconds;
    pthread_mutex_unlock(&m->mu);
    hist(&b, "ditserve_http_request_seconds",
         "Handling time of requests that do not wait for a job (all but sync generations and event streams).", &hs);

    ds_engine_metrics em;
    ds_engine_metrics_get(e, &em);
    put(&b, "# HELP ditserve_queue_depth Jobs waiting in the queues.\n# TYPE ditserve_queue_depth gauge\n"
            "ditserve_queue_depth %d\n", em.queue_depth);
    put(&b, "# HELP ditserve_jobs_running Jobs being denoised now.\n# TYPE ditserve_jobs_running gauge\n"
            "ditserve_jobs_running %d\n", em.running);
    put(&b, "# HELP ditserve_jobs_total Jobs by final state (submitted: accepted into a queue).\n"
            "# TYPE ditserve_jobs_total counter\n"
            "ditserve_jobs_total{state=\"submitted\"} %llu\nditserve_jobs_total{state=\"done\"} %llu\n"
            "ditserve_jobs_total{state=\"failed\"} %llu\nditserve_jobs_total{state=\"cancelled\"} %llu\n",
        (unsigned long long)em.submitted, (unsigned long long)em.done, (unsigned long long)em.failed,
        (unsigned long long)em.cancelled);
    put(&b, "# HELP ditserve_jobs_rejected_total Generations refused (queue full, model loading, shutting down).\n"
            "# TYPE ditserve_jobs_rejected_total counter\nditserve_jobs_rejected_total %llu\n",
        (unsigned long long)em.rejected);
    hist(&b, "ditserve_job_seconds", "Submit to final state, per finished job.", &em.job_seconds);
    hist(&b, "ditserve_queue_wait_seconds", "Submit to start of denoising.", &em.queue_seconds);
    hist(&b, "ditserve_step_seconds", "Wall time per denoising step.", &em.step_seconds);
    put(&b, "# HELP ditserve_steps_total Denoising steps run.\n# TYPE ditserve_steps_total counter\n"
            "ditserve_steps_total %llu\n"
            "# HELP ditserve_cached_steps_total Steps where the cache skipped the middle blocks.\n"
            "# TYPE ditserve_cached_steps_total counter\nditserve_cached_steps_total %llu\n"
            "# HELP ditserve_cached_step_ratio cached_steps_total / steps_total.\n# TYPE ditserve_cached_step_ratio gauge\n"
            "ditserve_cached_step_ratio %.6g\n",
        (unsigned long long)em.steps, (unsigned long long)em.cached_steps,
        em.steps ? (double)em.cached_steps / (double)em.steps : 0.0);
    hist(&b, "ditserve_residual_diff", "Residual diffs the cache measured (relative L1).", &em.residual_diff);
    put(&b, "# HELP ditserve_retained_jobs Finished jobs kept for their TTL.\n# TYPE ditserve_retained_jobs gauge\n"
            "ditserve_retained_jobs %d\n"
            "# HELP ditserve_retained_bytes Memory held by retained jobs.\n# TYPE ditserve_retained_bytes gauge\n"
            "ditserve_retained_bytes %zu\n", em.retained_jobs, em.retained_bytes);
    put(&b, "# HELP ditserve_model_ready 1 when the model is loaded and warmed up.\n# TYPE ditserve_model_ready gauge\n");
    for (int i = 0; i < ds_engine_model_count(e); i++) {
        ds_engine_model_info mi;
        ds_engine_model_get(e, i, &mi);
        put(&b, "ditserve_model_ready{model=\"%s\",device=\"%s\"} %d\n", mi.name, mi.device, mi.state == DS_MODEL_READY);
    }
    long rss = rss_bytes();
    put(&b, "# HELP ditserve_device_memory_bytes Memory in use per device (the CPU backend: the process's resident set).\n"
            "# TYPE ditserve_device_memory_bytes gauge\nditserve_device_memory_bytes{device=\"cpu\"} %ld\n"
            "# HELP process_resident_memory_bytes Resident memory of the process.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n", rss, rss);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
