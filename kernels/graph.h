/* graph.h - replay of repeated GPU work as CUDA graphs: a small per-owner table that maps a key (the bytes
 * that determine every launch of a piece of work: buffer addresses, shapes, block range) to an instantiated
 * graph. The first call of a key runs eagerly (it warms up lazy state such as cuBLASLt's algorithm choice),
 * the second is captured on the current CUDA context's stream and launched, and later calls only launch
 * the graph: one launch instead of hundreds per denoising step. On the CPU, with graphs switched off on
 * the context, or for work that cannot be captured (a host synchronisation inside, or any error while
 * capturing) the body simply runs eagerly; a key that failed to capture is never tried again.
 *
 * Correctness contract for a body: every kernel argument it launches must be a function of the key (device
 * pointers at fixed addresses, shapes, constants), never of host data that changes between calls; it must
 * not read device results on the host. Then a replay is the eager run, bit for bit.
 *
 * Owners: models (their monolithic forwards' block loops) and the cache engine (its block ranges). One
 * owner is used by one thread at a time (a worker), like the CUDA context. */
#ifndef DS_GRAPH_H
#define DS_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_GRAPH_KEY_WORDS 40

/* A key: up to DS_GRAPH_KEY_WORDS 64-bit words. Start from a zeroed struct ((ds_graph_key){0}) and append
 * with the helpers below; a key that overflowed is never captured (its work runs eagerly). */
typedef struct ds_graph_key {
    uint64_t w[DS_GRAPH_KEY_WORDS];
    int n;         /* words used */
    bool overflow; /* more was appended than fits */
} ds_graph_key;

/* The work to replay: runs its launches on the current context's stream. */
typedef ds_status (*ds_graph_body)(void *arg, ds_err *err);

/* How graphs are made and launched (the CUDA runtime by default; tests install a fake). `exec` is an
 * instantiated graph owned by the cache. */
typedef struct ds_graph_backend {
    bool (*active)(void);                                   /* graphs on for the calling thread? */
    uint64_t (*salt)(void); /* settings outside the key that change launches (the attention path); NULL: 0 */
    ds_status (*begin)(ds_err *err);                        /* start capturing the stream */
    ds_status (*end)(bool keep, void **exec, ds_err *err);  /* stop; keep: instantiate into *exec */
    ds_status (*launch)(void *exec, ds_err *err);           /* enqueue a replay */
    void (*destroy)(void *exec);
} ds_graph_backend;

typedef struct ds_graph_cache ds_graph_cache;

/* Counters of one cache (for logs, benchmarks and tests). */
typedef struct ds_graph_stats {
    uint64_t eager;     /* body runs without a graph (CPU, warm-up, refused keys, graphs off) */
    uint64_t captures;  /* graphs made */
    uint64_t launches;  /* graph replays, including the one right after each capture */
    uint64_t refused;   /* keys whose capture failed (then run eagerly for good) */
    uint64_t evicted;   /* graphs destroyed to make room */
} ds_graph_stats;

/* A cache of up to `capacity` keys (>= 1; least recently used evicted), backend NULL = the CUDA runtime's
 * (a build without CUDA: never active). Errors: DS_ERR_INVALID_ARG, DS_ERR_OOM. *out = NULL on failure. */
ds_status ds_graph_cache_create(int capacity, const ds_graph_backend *backend, ds_graph_cache **out, ds_err *err);

/* Destroys every graph, then the cache. NULL is a no-op. */
void ds_graph_cache_free(ds_graph_cache *gc);

/* Run body(arg) for `key` as described at the top. `device` is where the body's tensors live: only
 * DS_DEVICE_CUDA work is ever captured; gc NULL runs eagerly. Errors: the body's (from its eager run; a
 * failed capture is not an error, it falls back), or the backend's launch error. */
ds_status ds_graph_run(ds_graph_cache *gc, ds_device device, const ds_graph_key *key, ds_graph_body body, void *arg,
                       ds_err *err);

/* The cache's counters (zeros for NULL). */
ds_graph_stats ds_graph_cache_stats(const ds_graph_cache *gc);

/* Append a word; a pointer; a tensor's data pointer, device, dtype, rank and shape (2 + ndim words). */
void ds_graph_key_add(ds_graph_key *k, uint64_t v);
void ds_graph_key_add_ptr(ds_graph_key *k, const void *p);
void ds_graph_key_add_tensor(ds_graph_key *k, const ds_tensor *t);

#ifdef __cplusplus
}
#endif

#endif /* DS_GRAPH_H */
