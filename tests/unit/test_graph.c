/* test_graph.c - the graph cache's logic (kernels/graph.c) with a fake backend that records what a CUDA
 * runtime would be asked to do: warm-up then capture then replay per key, eager work on the CPU, with
 * graphs off and for overflowed keys, refusal and eager fallback when a capture fails (the work ran
 * nowhere while capturing, so it must run once eagerly), LRU eviction, and destruction of every graph. */
#include <criterion/criterion.h>
#include <string.h>

#include "graph.h"
#include "log.h"

/* ---- fake backend: counts, and a flag the body reads to know it is being captured ------------------- */

static struct {
    bool active, capturing, fail_end;
    uint64_t salt;
    int begins, ends, launches, destroyed, next_exec;
    int last_launched;
} fk;

static bool fk_active(void) { return fk.active; }
static ds_status fk_begin(ds_err *err) {
    (void)err;
    fk.begins++;
    fk.capturing = true;
    return DS_OK;
}
static ds_status fk_end(bool keep, void **exec, ds_err *err) {
    fk.ends++;
    fk.capturing = false;
    *exec = NULL;
    if (fk.fail_end) return DS_FAIL(err, DS_ERR_DEVICE, "instantiate failed (fake)");
    if (keep) *exec = (void *)(intptr_t)(++fk.next_exec);
    return DS_OK;
}
static ds_status fk_launch(void *exec, ds_err *err) {
    (void)err;
    fk.launches++;
    fk.last_launched = (int)(intptr_t)exec;
    return DS_OK;
}
static void fk_destroy(void *exec) {
    (void)exec;
    fk.destroyed++;
}
static uint64_t fk_salt(void) { return fk.salt; }
static const ds_graph_backend FAKE = {fk_active, fk_salt, fk_begin, fk_end, fk_launch, fk_destroy};

/* ---- bodies ---------------------------------------------------------------------------------------------- */

typedef struct body_log {
    int eager, captured;   /* runs outside / inside a capture */
    bool sync_inside;      /* behaves like work with a host synchronisation: fails while capturing */
    ds_status fail;        /* an error to return from every run */
} body_log;

static ds_status body(void *arg, ds_err *err) {
    body_log *b = arg;
    if (fk.capturing) {
        b->captured++;
        if (b->sync_inside) return DS_FAIL(err, DS_ERR_DEVICE, "operation not permitted when stream is capturing");
    } else {
        b->eager++;
    }
    if (b->fail != DS_OK) return DS_FAIL(err, b->fail, "body failed");
    return DS_OK;
}

static ds_graph_key key_of(uint64_t a, uint64_t b) {
    ds_graph_key k = {0};
    ds_graph_key_add(&k, a);
    ds_graph_key_add(&k, b);
    return k;
}

static const ds_device CUDA0 = {DS_DEVICE_CUDA, 0};
static const ds_device CPU = {DS_DEVICE_CPU, 0};

static ds_graph_cache *fresh(int cap) {
    memset(&fk, 0, sizeof fk);
    fk.active = true;
    ds_log_set_level(DS_LOG_ERROR); /* the refusal warning is expected in some tests */
    ds_graph_cache *gc = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_graph_cache_create(cap, &FAKE, &gc, &err), DS_OK, "%s", err.msg);
    return gc;
}

Test(graph, warmup_capture_replay) {
    ds_graph_cache *gc = fresh(4);
    body_log b = {0};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k = key_of(1, 2);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK); /* warm-up: eager */
    cr_assert_eq(b.eager, 1);
    cr_assert_eq(fk.begins, 0);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK); /* capture, then launch */
    cr_assert_eq(b.captured, 1);
    cr_assert_eq(b.eager, 1);
    cr_assert_eq(fk.begins, 1);
    cr_assert_eq(fk.ends, 1);
    cr_assert_eq(fk.launches, 1, "the captured work must be launched at once (capture runs nothing)");
    for (int i = 0; i < 5; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(b.eager + b.captured, 2, "replays must not run the body");
    cr_assert_eq(fk.launches, 6);
    cr_assert_eq(fk.begins, 1);
    ds_graph_stats s = ds_graph_cache_stats(gc);
    cr_assert_eq(s.eager, 1);
    cr_assert_eq(s.captures, 1);
    cr_assert_eq(s.launches, 6);
    cr_assert_eq(s.refused, 0);
    ds_graph_cache_free(gc);
    cr_assert_eq(fk.destroyed, 1);
}

Test(graph, eager_on_cpu_when_off_and_for_overflowed_keys) {
    ds_graph_cache *gc = fresh(4);
    body_log b = {0};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k = key_of(1, 2);
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CPU, &k, body, &b, &err), DS_OK);
    cr_assert_eq(b.eager, 3);
    fk.active = false; /* ds_cuda_ctx_set_graphs(ctx, false) */
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(b.eager, 6);
    fk.active = true;
    ds_graph_key big = {0};
    for (int i = 0; i < DS_GRAPH_KEY_WORDS + 1; i++) ds_graph_key_add(&big, (uint64_t)i);
    ds_graph_key full = {0}; /* exactly full: no room for the salt, so never captured either */
    for (int i = 0; i < DS_GRAPH_KEY_WORDS; i++) ds_graph_key_add(&full, (uint64_t)i);
    cr_assert(!full.overflow);
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &full, body, &b, &err), DS_OK);
    b.eager -= 3;
    cr_assert(big.overflow);
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &big, body, &b, &err), DS_OK);
    cr_assert_eq(b.eager, 9);
    cr_assert_eq(fk.begins + fk.launches, 0);
    cr_assert_eq(ds_graph_run(NULL, CUDA0, &k, body, &b, &err), DS_OK); /* no cache: eager */
    cr_assert_eq(b.eager, 10);
    ds_graph_cache_free(gc);
}

Test(graph, failed_capture_falls_back_to_eager_for_good) {
    ds_graph_cache *gc = fresh(4);
    body_log b = {.sync_inside = true};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k = key_of(7, 7);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK, "a refused capture is not an error: %s", err.msg);
    cr_assert_eq(b.captured, 1);
    cr_assert_eq(b.eager, 2, "the work must still run once, eagerly");
    cr_assert_eq(fk.ends, 1, "the capture must be ended");
    cr_assert_eq(fk.launches, 0);
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(fk.begins, 1, "a refused key is never captured again");
    cr_assert_eq(b.eager, 5);
    cr_assert_eq(ds_graph_cache_stats(gc).refused, 1);

    /* instantiation failing: refused too */
    body_log c = {0};
    const ds_graph_key k2 = key_of(8, 8);
    fk.fail_end = true;
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k2, body, &c, &err), DS_OK);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k2, body, &c, &err), DS_OK);
    cr_assert_eq(c.eager, 2);
    cr_assert_eq(c.captured, 1);
    cr_assert_eq(ds_graph_cache_stats(gc).refused, 2);
    ds_graph_cache_free(gc);
}

Test(graph, errors_propagate_from_eager_runs) {
    ds_graph_cache *gc = fresh(4);
    body_log b = {.fail = DS_ERR_INVALID_ARG};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k = key_of(3, 4);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_ERR_INVALID_ARG);
    ds_err_clear(&err);
    /* the capture attempt fails inside the body: refused, and the eager rerun reports the error */
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_ERR_INVALID_ARG);
    cr_assert_str_eq(err.msg, "body failed");
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, NULL, &b, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(fk.launches, 0);
    ds_err_clear(&err);
    cr_assert_eq(ds_graph_cache_create(0, &FAKE, &(ds_graph_cache *){NULL}, &err), DS_ERR_INVALID_ARG);
    ds_graph_cache_free(gc);
}

Test(graph, keys_are_separate_and_lru_evicts) {
    ds_graph_cache *gc = fresh(2);
    body_log b[3] = {{0}};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k[3] = {key_of(1, 0), key_of(2, 0), key_of(3, 0)};
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 2; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k[i], body, &b[i], &err), DS_OK);
    cr_assert_eq(ds_graph_cache_stats(gc).captures, 2);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k[0], body, &b[0], &err), DS_OK); /* k1 is now the older one */
    cr_assert_eq(fk.last_launched, 1);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k[2], body, &b[2], &err), DS_OK); /* evicts k1 (index 1) */
    cr_assert_eq(fk.destroyed, 1);
    cr_assert_eq(ds_graph_cache_stats(gc).evicted, 1);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k[0], body, &b[0], &err), DS_OK); /* k0 survived: a replay */
    cr_assert_eq(fk.last_launched, 1);
    cr_assert_eq(b[0].eager + b[0].captured, 2);
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k[1], body, &b[1], &err), DS_OK); /* k1 is new again: warm-up */
    cr_assert_eq(b[1].eager, 2); /* (k2, warm but without a graph, was the least recent: evicted, nothing to destroy) */
    /* a tensor key differs by pointer and by shape */
    float x[8];
    ds_tensor t1 = ds_tensor_f32(x, 2, 2, 4), t2 = ds_tensor_f32(x, 2, 4, 2), t3 = ds_tensor_f32(x + 1, 2, 2, 4);
    ds_graph_key a = {0}, c = {0}, d = {0};
    ds_graph_key_add_tensor(&a, &t1);
    ds_graph_key_add_tensor(&c, &t2);
    ds_graph_key_add_tensor(&d, &t3);
    cr_assert_eq(a.n, 4);
    cr_assert(memcmp(a.w, c.w, sizeof a.w) != 0 && memcmp(a.w, d.w, sizeof a.w) != 0);
    ds_graph_cache_free(gc);
    cr_assert_eq(fk.destroyed, 2, "free destroys the one live graph (k0)");
}

Test(graph, context_settings_salt_the_key) {
    ds_graph_cache *gc = fresh(4);
    body_log b = {0};
    ds_err err;
    ds_err_clear(&err);
    const ds_graph_key k = key_of(5, 6);
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(fk.last_launched, 1);
    fk.salt = 2; /* e.g. the exact attention path: the graph made under the fast path must not replay */
    for (int i = 0; i < 3; i++) cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(b.eager, 2);
    cr_assert_eq(b.captured, 2);
    cr_assert_eq(fk.last_launched, 2);
    fk.salt = 0;
    cr_assert_eq(ds_graph_run(gc, CUDA0, &k, body, &b, &err), DS_OK);
    cr_assert_eq(fk.last_launched, 1, "back to the first setting: its graph again");
    ds_graph_cache_free(gc);
}
