/* sse.c - server-sent events of a job: step events in order, then done/error (see sse.h). */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

struct ds_sse_stream {
    ds_engine *eng;
    ds_job    *job;
    char      *url_prefix;
    char      *pending; /* bytes not yet handed out */
    size_t     len, off;
    int        next_event;
    int        finished; /* 1: the final event is in pending; 2: sent */
};

ds_sse_stream *ds_sse_open(ds_engine *e, ds_job *j, const char *url_prefix) {
    ds_sse_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->url_prefix = strdup(url_prefix ? url_prefix : "");
    if (!s->url_prefix) {
        free(s);
        return NULL;
    }
    s->eng = e;
    s->job = j;
    ds_engine_job_retain(e, j);
    return s;
}

void ds_sse_close(ds_sse_stream *s) {
    if (!s) return;
    ds_engine_job_release(s->eng, s->job);
    free(s->pending);
    free(s->url_prefix);
    free(s);
}

/* Append "event: NAME\ndata: DATA\n\n" (or a comment when name is NULL). */
static int append(ds_sse_stream *s, const char *name, const char *data) {
    size_t need = (name ? strlen(name) + strlen(data) + 16 : strlen(data) + 1);
    char *p = realloc(s->pending, s->len + need + 1);
    if (!p) return -1;
    s->pending = p;
    int n = name ? snprintf(p + s->len, need + 1, "event: %s\ndata: %s\n\n", name, data)
                 : snprintf(p + s->len, need + 1, "%s", data);
    s->len += (size_t)n;
    return 0;
}

/* Queue whatever is new; returns 1 when something was queued. */
static int fill(ds_sse_stream *s, int wait_ms) {
    ds_job_step_event ev[16];
    for (int tries = 0; tries < 2; tries++) {
        ds_job_snapshot snap;
        ds_engine_job_snapshot(s->eng, s->job, &snap);
        int n = ds_engine_job_events(s->eng, s->job, s->next_event, ev, 16);
        if (n > 0) {
            for (int i = 0; i < n; i++) {
                char *d = ds_api_step_json(s->job, &ev[i]);
                if (d) append(s, "step", d);
                free(d);
            }
            s->next_event += n;
            return 1;
        }
        if (ds_job_state_final(snap.state)) {
            if (snap.state == DS_JOB_DONE) {
                char *d = ds_api_job_json(s->job, &snap, DS_API_IMAGES_B64, s->url_prefix, NULL);
                append(s, "done", d ? d : "{}");
                free(d);
            } else {
                char *d = ds_api_job_json(s->job, &snap, DS_API_IMAGES_NONE, s->url_prefix, NULL);
                append(s, "error", d ? d : "{}");
                free(d);
            }
            s->finished = 1;
            return 1;
        }
        if (tries == 0) {
            if (!ds_engine_job_wait(s->eng, s->job, snap.version, wait_ms, &snap)) return 0;
        }
    }
    return 0;
}

ssize_t ds_sse_read(ds_sse_stream *s, char *buf, size_t cap, int keepalive_ms) {
    if (s->off >= s->len) {
        s->off = s->len = 0;
        if (s->finished) return -1;
        if (!fill(s, keepalive_ms)) append(s, NULL, ": ping\n\n");
        if (s->len == 0) return -1; /* out of memory */
    }
    size_t n = s->len - s->off;
    if (n > cap) n = cap;
    memcpy(buf, s->pending + s->off, n);
    s->off += n;
    return (ssize_t)n;
}
