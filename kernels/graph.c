/* graph.c - the key table of graph.h: lookup, warm-up, capture with fallback, LRU eviction. The CUDA calls
 * themselves are behind ds_graph_backend (kernels/cuda/graph.cu; none without CUDA), so this logic is
 * unit-tested on the CPU with a fake backend. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda_ops.h"
#endif

typedef enum { G_NEW = 0, G_WARM, G_READY, G_REFUSED } g_state; /* G_NEW: never run */

typedef struct g_entry {
    ds_graph_key key;
    g_state state;
    void *exec;
    uint64_t stamp; /* last use; 0 = empty slot */
} g_entry;

struct ds_graph_cache {
    int cap;
    g_entry *e;
    uint64_t clock;
    ds_graph_backend be;
    ds_graph_stats st;
};

#ifdef DS_HAVE_CUDA
static const ds_graph_backend *default_backend(void) { return ds_cuda_graph_backend(); }
#else
static bool never(void) { return false; }
static const ds_graph_backend *default_backend(void) {
    static const ds_graph_backend none = {never, NULL, NULL, NULL, NULL, NULL};
    return &none;
}
#endif

ds_status ds_graph_cache_create(int capacity, const ds_graph_backend *backend, ds_graph_cache **out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "graph cache: NULL result pointer");
    *out = NULL;
    if (capacity < 1 || capacity > 4096)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "graph cache: capacity %d outside 1..4096", capacity);
    ds_graph_cache *gc = calloc(1, sizeof *gc);
    g_entry *e = calloc((size_t)capacity, sizeof *e);
    if (!gc || !e) {
        free(gc);
        free(e);
        return DS_FAIL(err, DS_ERR_OOM, "graph cache: %d entries", capacity);
    }
    gc->cap = capacity;
    gc->e = e;
    gc->be = backend ? *backend : *default_backend();
    *out = gc;
    return DS_OK;
}

static void drop(ds_graph_cache *gc, g_entry *e) {
    if (e->exec && gc->be.destroy) gc->be.destroy(e->exec);
    memset(e, 0, sizeof *e);
}

void ds_graph_cache_free(ds_graph_cache *gc) {
    if (!gc) return;
    for (int i = 0; i < gc->cap; i++) drop(gc, &gc->e[i]);
    free(gc->e);
    free(gc);
}

ds_graph_stats ds_graph_cache_stats(const ds_graph_cache *gc) {
    ds_graph_stats z = {0};
    return gc ? gc->st : z;
}

/* The entry of key, or a fresh one (an empty slot, else the least recently used, whose graph is destroyed). */
static g_entry *lookup(ds_graph_cache *gc, const ds_graph_key *key) {
    g_entry *victim = &gc->e[0];
    for (int i = 0; i < gc->cap; i++) {
        g_entry *e = &gc->e[i];
        if (e->stamp && e->key.n == key->n && memcmp(e->key.w, key->w, sizeof key->w) == 0) return e;
        if (!e->stamp ? victim->stamp != 0 : (victim->stamp && e->stamp < victim->stamp)) victim = e;
    }
    if (victim->stamp) {
        if (victim->exec) gc->st.evicted++;
        drop(gc, victim);
    }
    victim->key = *key;
    victim->state = G_NEW;
    return victim;
}

ds_status ds_graph_run(ds_graph_cache *gc, ds_device device, const ds_graph_key *key, ds_graph_body body, void *arg,
                       ds_err *err) {
    if (!body) return DS_FAIL(err, DS_ERR_INVALID_ARG, "graph: NULL body");
    if (!gc || !key || key->overflow || device.kind != DS_DEVICE_CUDA || !gc->be.active || !gc->be.active()) {
        if (gc) gc->st.eager++;
        return body(arg, err);
    }
    ds_graph_key salted = *key; /* the same work under other context settings is other work */
    ds_graph_key_add(&salted, gc->be.salt ? gc->be.salt() : 0);
    if (salted.overflow) {
        gc->st.eager++;
        return body(arg, err);
    }
    g_entry *e = lookup(gc, &salted);
    e->stamp = ++gc->clock;
    switch (e->state) {
    case G_READY:
        gc->st.launches++;
        return gc->be.launch(e->exec, err);
    case G_NEW: /* warm-up: lazy state (algorithm choices, kernel attributes) settles in an eager run */
        e->state = G_WARM;
        gc->st.eager++;
        return body(arg, err);
    case G_REFUSED:
        gc->st.eager++;
        return body(arg, err);
    case G_WARM:
        break;
    }
    /* capture: nothing runs while capturing, so the graph is launched right after (or the body runs eagerly
     * when the capture failed: the state it works on is untouched) */
    ds_err cerr;
    ds_err_clear(&cerr);
    ds_status st = gc->be.begin(&cerr);
    if (st == DS_OK) {
        const ds_status bs = body(arg, &cerr);
        void *exec = NULL;
        ds_err eerr;
        ds_err_clear(&eerr);
        const ds_status es = gc->be.end(bs == DS_OK, &exec, &eerr);
        if (bs == DS_OK && es == DS_OK && exec) {
            e->exec = exec;
            e->state = G_READY;
            gc->st.captures++;
            gc->st.launches++;
            return gc->be.launch(exec, err);
        }
        if (exec) gc->be.destroy(exec);
        if (bs == DS_OK) cerr = eerr;
    }
    e->state = G_REFUSED;
    gc->st.refused++;
    gc->st.eager++;
    DS_LOGW("graph", "work not captured as a CUDA graph (it runs eagerly from now on): %s", cerr.msg);
    return body(arg, err);
}

void ds_graph_key_add(ds_graph_key *k, uint64_t v) {
    if (k->n >= DS_GRAPH_KEY_WORDS) {
        k->overflow = true;
        return;
    }
    k->w[k->n++] = v;
}

void ds_graph_key_add_ptr(ds_graph_key *k, const void *p) { ds_graph_key_add(k, (uint64_t)(uintptr_t)p); }

void ds_graph_key_add_tensor(ds_graph_key *k, const ds_tensor *t) {
    ds_graph_key_add_ptr(k, t ? t->data : NULL);
    if (!t) {
        ds_graph_key_add(k, 0);
        return;
    }
    ds_graph_key_add(k, (uint64_t)t->device.kind | (uint64_t)(uint32_t)t->device.index << 8 |
                            (uint64_t)t->dtype << 40 | (uint64_t)t->ndim << 56);
    for (int i = 0; i < t->ndim; i++) ds_graph_key_add(k, (uint64_t)t->shape[i]);
}
