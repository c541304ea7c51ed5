/* routes.h - the HTTP API independent of the transport: a request (method, path, body, the few headers
 * that matter) goes in, a response (status, content type, body or an SSE stream, extra headers) comes out.
 * server/http.c adapts libmicrohttpd to this; tests can call it directly.
 *
 * Routes (docs/api.md has every field, default, limit and error):
 *   GET    /                            the web playground, a static HTML page (no auth; api/playground.h)
 *   GET    /health                      200 ready | 503 loading, warming up, failed, shutting down (no auth)
 *   GET    /v1/models                   resident models
 *   POST   /v1/generate                 sync (200 with the result) or async (202 with the job)
 *   GET    /v1/jobs/{id}                state, step k of n, timings, error, image URLs
 *   DELETE /v1/jobs/{id}                cancel (queued: at once; running: at the next step)
 *   GET    /v1/jobs/{id}/events         server-sent events: step..., then done | error
 *   GET    /v1/stats/{id}               cache statistics of a finished job
 *   GET    /v1/images/{id}/{k}.png      image k (from 0) of a done job
 *   POST   /v1/images/generations       the OpenAI Images API with ditserve's extras
 * Every error body is {"error": {"message", "type", "param", "code"}}. With an API key every route but
 * / and /health needs "Authorization: Bearer KEY" (compared in constant time). */
#ifndef DS_ROUTES_H
#define DS_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "request.h"
#include "sse.h"

typedef struct ds_api ds_api; /* opaque */

typedef struct ds_api_opts {
    ds_api_limits limits;
    const char   *api_key;          /* NULL or "": no authentication */
    const char  **cors_origins;     /* allowed Origin values ("*" allows any); copied */
    int           n_cors_origins;
    int           retry_after_s;    /* Retry-After on 429/503 [2] */
    int           sse_keepalive_ms; /* ": ping" interval on idle event streams [10000] */
} ds_api_opts;

typedef struct ds_api_request {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* without the query string */
    const char *body;          /* may be NULL */
    size_t      body_len;
    const char *authorization; /* header values, NULL when absent */
    const char *origin;
    const char *host;
    /* Whether the client has gone away (sync generations then cancel their job). NULL: never. */
    bool (*client_gone)(void *conn);
    void *conn;
} ds_api_request;

#define DS_API_MAX_HEADERS 8

typedef struct ds_api_header {
    char name[40];
    char value[256];
} ds_api_header;

typedef struct ds_api_response {
    int            status;
    const char    *content_type; /* static string */
    char          *body;         /* malloc'd (NULL when sse is set) */
    size_t         body_len;
    ds_api_header  headers[DS_API_MAX_HEADERS];
    int            n_headers;
    ds_sse_stream *sse;          /* non-NULL: stream the body from here (text/event-stream) */
    const char    *route;        /* static route label for metrics ("/v1/jobs/{id}", "unknown") */
} ds_api_response;

/* An API over engine e (not owned). Returns NULL on OOM. */
ds_api *ds_api_create(ds_engine *e, const ds_api_opts *opts);

/* NULL allowed. */
void ds_api_free(ds_api *a);

/* Handle one request: fills *resp (which the caller releases with ds_api_response_free). Never fails:
 * every problem becomes an error response. A sync generation blocks until its job is final (polling
 * req->client_gone). Thread-safe. */
void ds_api_handle(ds_api *a, const ds_api_request *req, ds_api_response *resp);

/* Release a response's body and stream. */
void ds_api_response_free(ds_api_response *r);

/* Whether the Authorization header value grants access (true when no key is set). Constant time in the
 * key's length. */
bool ds_api_authorized(const ds_api *a, const char *authorization);

/* Fill resp with an error (any HTTP status) and the OpenAI-shaped body. */
void ds_api_set_error(ds_api_response *resp, int http_status, const char *type, const char *code, const char *param,
                      const char *message);

/* Add a header (ignored past DS_API_MAX_HEADERS). */
void ds_api_add_header(ds_api_response *resp, const char *name, const char *value);

#endif /* DS_ROUTES_H */
