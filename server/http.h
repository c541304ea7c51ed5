/* http.h - the libmicrohttpd transport: one thread per connection, request bodies accumulated up to a cap
 * (413 above it, answered before the body is read when Content-Length says so), every request handed to
 * api/routes.c, /metrics rendered by server/metrics.c, server-sent event streams pulled from api/sse.c,
 * and client disconnects reported to sync generations (which then cancel their job). Built only with
 * libmicrohttpd (DS_HAVE_MHD). */
#ifndef DS_SERVER_HTTP_H
#define DS_SERVER_HTTP_H

#include <stddef.h>

#include "engine.h"
#include "metrics.h"
#include "routes.h"
#include "status.h"

typedef struct ds_http ds_http; /* opaque */

typedef struct ds_http_opts {
    const char *host;       /* IPv4 or IPv6 literal, or "localhost" */
    int         port;       /* 0: any free port (ds_http_port says which) */
    size_t      max_body;   /* bytes */
    int         max_connections;
    ds_api     *api;        /* not owned */
    ds_engine  *engine;     /* not owned (for /metrics) */
    ds_metrics *metrics;    /* not owned */
} ds_http_opts;

/* Bind and start serving. Errors: DS_ERR_INVALID_ARG (a host that is not an address), DS_ERR_IO (the
 * address cannot be bound: in use, no permission; the message names host:port). */
ds_status ds_http_start(const ds_http_opts *opts, ds_http **out, ds_err *err);

/* The port actually bound. */
int ds_http_port(const ds_http *h);

/* Stop accepting new connections (existing ones go on). */
void ds_http_quiesce(ds_http *h);

/* Stop: waits for the connection threads (so jobs they wait on must be able to finish), frees h. NULL ok. */
void ds_http_stop(ds_http *h);

#endif /* DS_SERVER_HTTP_H */
