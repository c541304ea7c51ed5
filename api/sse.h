/* sse.h - the server-sent event stream of one job (GET /v1/jobs/{id}/events): one `step` event per
 * finished denoising step (replayed from step 1 for late subscribers, always in order), then `done` with
 * the full result (as the sync reply) or `error` (failed or cancelled), then the end of the stream. Comment
 * lines (": ping") keep idle connections alive. The transport pulls bytes with ds_sse_read. */
#ifndef DS_SSE_H
#define DS_SSE_H

#include <stddef.h>
#include <sys/types.h>

#include "engine.h"

typedef struct ds_sse_stream ds_sse_stream; /* opaque */

/* A stream over job j (takes its own reference). url_prefix goes in front of image URLs (may be "").
 * Returns NULL on OOM. */
ds_sse_stream *ds_sse_open(ds_engine *e, ds_job *j, const char *url_prefix);

/* Copy up to cap bytes of the stream into buf, blocking until there is something to send (at most
 * keepalive_ms, after which a ": ping" comment is sent). Returns the bytes written (> 0), or -1 at the end
 * of the stream. */
ssize_t ds_sse_read(ds_sse_stream *s, char *buf, size_t cap, int keepalive_ms);

/* Release the stream and its job reference (NULL allowed). */
void ds_sse_close(ds_sse_stream *s);

#endif /* DS_SSE_H */
