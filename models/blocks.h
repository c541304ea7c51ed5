/* blocks.h - the model-agnostic view of a transformer's block lists, and the hook through which the
 * engine (the cache) runs them in place of the pipelines' plain "every block in order" loop.
 *
 * Layering: models/ defines this interface; engine/cache.c implements ds_block_runner. A pipeline that
 * gets a runner in ds_gen_params.runner splits its transformer call into embed -> runner->run(lists) ->
 * final; without one (runner == NULL) it calls the monolithic forward exactly as before, bit for bit.
 *
 * Forward patterns (cache-dit's ForwardPattern, reduced to what ditserve's models need):
 *   DS_BLOCK_IO_HIDDEN          block(h) -> h, no encoder stream              (DiT; cache-dit Pattern 3)
 *   DS_BLOCK_IO_HIDDEN_ENCODER  block(h, e) -> (h, e), both in place          (FLUX; cache-dit Pattern 0/1)
 * A list whose blocks take the joined [text, image] sequence internally (FLUX single blocks) is
 * presented by the model with the same (h, e) state, as cache-dit's FluxPatchFunctor does: the block
 * function joins, runs and splits (O(S*D) copies, exact).
 *
 * FLUX.1 presents its double and single lists either merged into one list of 19+38 blocks (the
 * default, cache-dit's FLUX adapter: one decision per step) or as two lists (runner->split_lists:
 * each list is its own cache context deciding on its own). */
#ifndef DS_BLOCKS_H
#define DS_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "graph.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ds_block_io {
    DS_BLOCK_IO_HIDDEN = 0,         /* blocks read and write hidden only; state.encoder.data == NULL */
    DS_BLOCK_IO_HIDDEN_ENCODER = 1, /* blocks read and write hidden and encoder */
} ds_block_io;

/* The streams a block list transforms in place. hidden [B, N, D] (image tokens), encoder [B, T, D]
 * (text tokens; data NULL for DS_BLOCK_IO_HIDDEN). Contiguous f32 CPU tensors owned by the pipeline. */
typedef struct ds_block_state {
    ds_tensor hidden;
    ds_tensor encoder;
} ds_block_state;

/* Run block i (0 <= i < n_blocks) of a list in place on st. `model` is the list's model pointer.
 * Errors: whatever the model's block forward returns. */
typedef ds_status (*ds_block_fn)(void *model, int i, ds_block_state *st, ds_err *err);

/* One block list (one cache-dit "blocks" entry). Valid for the duration of one runner->run call. */
typedef struct ds_block_list {
    const char *name;     /* stable name for stats: "transformer_blocks", "single_transformer_blocks" */
    int         n_blocks; /* >= 1 */
    ds_block_io io;
    ds_block_fn forward;
    void       *model;    /* passed to forward */
    /* CUDA graphs (graph.h): graph_key is what, besides the state's tensors, fixes every launch of a block
     * range (the model and the device buffers `model` points the blocks at); a runner may replay a range
     * through ds_graph_run(graphs, ...) keyed by it plus the range and the state's tensors. graphs is the
     * pipeline's cache (it outlives requests). Either NULL: never capture (blocks that synchronise,
     * wrappers). */
    ds_graph_cache     *graphs;
    const ds_graph_key *graph_key;
} ds_block_list;

/* What a pipeline tells the runner when a request starts (before the first transformer call). */
typedef struct ds_block_request {
    int         steps;          /* denoising steps of this request */
    int         calls_per_step; /* transformer calls per step: 1, or 2 for FLUX true CFG (cond, then negative) */
    int         n_lists;        /* lists every run call will pass (fixed for the request) */
    const char *list_names[4];
    int         list_blocks[4]; /* n_blocks of each list */
    int64_t     hidden_numel;   /* B*N*D of state.hidden (the batch as the transformer sees it) */
    int64_t     encoder_numel;  /* B*T*D of state.encoder, 0 when no list has an encoder stream */
    bool        batched_cfg;    /* CFG runs as one call on a doubled batch (DiT) */
    ds_device   device;         /* where state.hidden / state.encoder live (zeroed: the CPU) */
    ds_dtype    dtype;          /* their element type (zeroed: f32; bf16/f16/f32 on CUDA) */
} ds_block_request;

/* The hook. All function pointers receive `ctx`. */
typedef struct ds_block_runner {
    void *ctx;
    /* Present FLUX.1's double and single lists as two lists (two cache contexts) instead of one merged
     * list. Read by the pipeline; models with one list ignore it. */
    bool split_lists;
    /* Called once per request before the first transformer call: reset all per-request state (a clean
     * context per request) and size it for req. Errors abort the generation (e.g. DS_ERR_INVALID_ARG
     * when the config does not fit the lists: Fn + Bn > n_blocks; DS_ERR_OOM). */
    ds_status (*begin)(void *ctx, const ds_block_request *req, ds_err *err);
    /* One transformer call: run lists[0..n_lists) in order on st (in place), computing or skipping
     * blocks as the runner decides; the result must equal running every block when nothing is skipped.
     * step: 0-based denoising step; call: 0 = the step's first transformer call, 1 = the second (FLUX
     * true CFG's negative prompt). Must not allocate. Errors: a block's error, DS_ERR_INTERNAL. */
    ds_status (*run)(void *ctx, const ds_block_list *lists, int n_lists, ds_block_state *st, int step, int call,
                     ds_err *err);
    /* Optional (NULL allowed): called after each denoising step (1-based step of steps), before the
     * pipeline's on_step callback. */
    void (*step_done)(void *ctx, int step, int steps);
} ds_block_runner;

#ifdef __cplusplus
}
#endif

#endif /* DS_BLOCKS_H */
