/* metrics.h - Prometheus text exposition for GET /metrics: HTTP requests by route and status (counted here
 * by the transport), and the engine's queue depth, job / queue-wait / step latency histograms, cached-step
 * ratio, residual-diff histogram, retained jobs, model readiness and process memory. */
#ifndef DS_SERVER_METRICS_H
#define DS_SERVER_METRICS_H

#include <stddef.h>

#include "engine.h"

typedef struct ds_metrics ds_metrics; /* opaque, thread-safe */

/* A new registry (NULL on OOM). */
ds_metrics *ds_metrics_create(void);

/* NULL allowed. */
void ds_metrics_free(ds_metrics *m);

/* Count one answered request: route is a static label, status the HTTP status; seconds its handling time. */
void ds_metrics_count(ds_metrics *m, const char *route, int status, double seconds);

/* The whole exposition (malloc'd, caller frees; NULL on OOM). */
char *ds_metrics_render(ds_metrics *m, ds_engine *e);

#endif /* DS_SERVER_METRICS_H */
