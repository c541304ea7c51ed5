// context.cu - the per-thread CUDA context of the op twins (see ds_cuda_ops.h): one device, one
// non-blocking stream, one cuBLASLt handle with its workspace and algorithm cache (linear_lt.cu), and a
// small device scratch for multi-block reductions (GroupNorm statistics, diff_sums partials).
//
// The calling thread's current context is a thread-local pointer: a worker binds its context once and
// every ds_cuda_op_* it calls enqueues on that context's stream. A context is used by one host thread
// at a time (its stream and cuBLASLt workspace are not shared).
//
// Every failing CUDA call clears the runtime's sticky "last error" (cudaGetLastError), so a later
// launch check reports only that launch; out-of-memory becomes DS_ERR_OOM, anything else DS_ERR_DEVICE,
// both with cudaGetErrorString.
#include <cuda_runtime.h>
#include <stdlib.h>

#include "cuda_util.cuh"
#include "ds_cuda.h"
#include "ds_cuda_ops.h"

#define DS_CTX_LT_WORKSPACE_DEFAULT ((size_t)32 << 20) // 32 MiB: a good cuBLASLt workspace on Hopper
#define DS_CTX_SCRATCH_BYTES ((size_t)256 << 10)       // 256 KiB of reduction partials

struct ds_cuda_ctx {
    int device;
    cudaStream_t stream;  // cudaStreamNonBlocking: no implicit sync with the legacy default stream
    ds_cuda_lt *lt;       // handle + workspace + per-shape algorithm cache
    void *scratch;        // device memory, DS_CTX_SCRATCH_BYTES, for the ops' reductions
    size_t scratch_bytes;
    ds_cuda_attn_path attn;  // DS_CUDA_ATTN_FAST (0, calloc) unless set
    bool graphs_off;         // CUDA graphs on (false, calloc) unless switched off
};

static __thread ds_cuda_ctx *tls_ctx = NULL;

// A failed CUDA call as a ds_status: clears the sticky error, OOM -> DS_ERR_OOM, else DS_ERR_DEVICE.
static ds_status cuda_fail(cudaError_t e, const char *what, ds_err *err) {
    (void)cudaGetLastError();
    const ds_status code = e == cudaErrorMemoryAllocation ? DS_ERR_OOM : DS_ERR_DEVICE;
    return DS_FAIL(err, code, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" ds_status ds_cuda_ctx_create(int index, size_t lt_workspace_bytes, ds_cuda_ctx **ctx, ds_err *err) {
    if (!ctx) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_ctx_create: NULL result pointer");
    *ctx = NULL;
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "ds_cuda_ctx_create: cudaSetDevice(%d): %s", index, cudaGetErrorString(e));
    }
    ds_cuda_ctx *c = (ds_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return DS_FAIL(err, DS_ERR_OOM, "ds_cuda_ctx_create: out of host memory");
    c->device = index;
    ds_status st = DS_OK;
    e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        c->stream = NULL;
        st = cuda_fail(e, "ds_cuda_ctx_create: cudaStreamCreateWithFlags", err);
        goto fail;
    }
    st = ds_cuda_lt_create(&c->lt, lt_workspace_bytes ? lt_workspace_bytes : DS_CTX_LT_WORKSPACE_DEFAULT, err);
    if (st != DS_OK) {
        ds_err_prefix(err, "ds_cuda_ctx_create");
        goto fail;
    }
    st = ds_cuda_malloc(&c->scratch, DS_CTX_SCRATCH_BYTES, err);
    if (st != DS_OK) {
        ds_err_prefix(err, "ds_cuda_ctx_create: reduction scratch");
        goto fail;
    }
    c->scratch_bytes = DS_CTX_SCRATCH_BYTES;
    *ctx = c;
    return DS_OK;

fail:
    ds_cuda_lt_destroy(c->lt);
    if (c->stream && cudaStreamDestroy(c->stream) != cudaSuccess) (void)cudaGetLastError();
    free(c);
    return st;
}

extern "C" void ds_cuda_ctx_destroy(ds_cuda_ctx *ctx) {
    if (!ctx) return;
    if (tls_ctx == ctx) tls_ctx = NULL;
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) {
        (void)cudaGetLastError();
        prev = -1;
    }
    if (cudaSetDevice(ctx->device) != cudaSuccess) (void)cudaGetLastError();
    // Wait for the work that uses the workspace and scratch; an asynchronous error is dropped here
    // (nobody is left to report it to) and cleared so it does not leak into the next call.
    if (cudaStreamSynchronize(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
    ds_cuda_lt_destroy(ctx->lt);
    ds_cuda_free(ctx->scratch);
    if (cudaStreamDestroy(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
    if (prev >= 0 && prev != ctx->device && cudaSetDevice(prev) != cudaSuccess) (void)cudaGetLastError();
    free(ctx);
}

extern "C" ds_status ds_cuda_ctx_bind(ds_cuda_ctx *ctx, ds_err *err) {
    if (!ctx) {
        tls_ctx = NULL;
        return DS_OK;
    }
    cudaError_t e = cudaSetDevice(ctx->device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "ds_cuda_ctx_bind: cudaSetDevice(%d): %s", ctx->device,
                       cudaGetErrorString(e));
    }
    tls_ctx = ctx;
    return DS_OK;
}

extern "C" ds_cuda_ctx *ds_cuda_ctx_current(void) { return tls_ctx; }

extern "C" int ds_cuda_ctx_device(const ds_cuda_ctx *ctx) { return ctx ? ctx->device : -1; }

extern "C" void *ds_cuda_ctx_stream(const ds_cuda_ctx *ctx) { return ctx ? (void *)ctx->stream : NULL; }

extern "C" void ds_cuda_ctx_set_attention(ds_cuda_ctx *ctx, ds_cuda_attn_path path) {
    if (ctx) ctx->attn = path == DS_CUDA_ATTN_EXACT ? DS_CUDA_ATTN_EXACT : DS_CUDA_ATTN_FAST;
}

extern "C" ds_cuda_attn_path ds_cuda_ctx_attention(const ds_cuda_ctx *ctx) {
    return ctx ? ctx->attn : DS_CUDA_ATTN_FAST;
}

extern "C" void ds_cuda_ctx_set_graphs(ds_cuda_ctx *ctx, bool on) {
    if (ctx) ctx->graphs_off = !on;
}

extern "C" bool ds_cuda_ctx_graphs(const ds_cuda_ctx *ctx) { return ctx && !ctx->graphs_off; }

extern "C" struct ds_cuda_lt *ds_cuda_ctx_lt(void) { return tls_ctx ? tls_ctx->lt : NULL; }

extern "C" void *ds_cuda_ctx_scratch(const ds_cuda_ctx *ctx, size_t *bytes) {
    if (bytes) *bytes = ctx ? ctx->scratch_bytes : 0;
    return ctx ? ctx->scratch : NULL;
}

extern "C" ds_status ds_cuda_ctx_sync(ds_err *err) {
    ds_cuda_ctx *ctx = tls_ctx;
    if (!ctx) return DS_FAIL(err, DS_ERR_DEVICE, "ds_cuda_ctx_sync: no CUDA context bound to this thread");
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) return cuda_fail(e, "ds_cuda_ctx_sync: the context's stream", err);
    return DS_OK;
}

// Copy on the current context's stream, then wait for it (host buffers may be pageable and reused).
static ds_status ctx_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what,
                          ds_err *err) {
    ds_cuda_ctx *ctx = tls_ctx;
    if (!ctx) return DS_FAIL(err, DS_ERR_DEVICE, "%s: no CUDA context bound to this thread", what);
    if (bytes == 0) return DS_OK;
    if (!dst || !src) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL pointer for %zu bytes", what, bytes);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, e == cudaErrorMemoryAllocation ? DS_ERR_OOM : DS_ERR_DEVICE, "%s of %zu bytes: %s", what,
                       bytes, cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" ds_status ds_cuda_ctx_upload(void *d_dst, const void *src, size_t bytes, ds_err *err) {
    return ctx_copy(d_dst, src, bytes, cudaMemcpyHostToDevice, "ds_cuda_ctx_upload", err);
}

extern "C" ds_status ds_cuda_ctx_download(void *dst, const void *d_src, size_t bytes, ds_err *err) {
    return ctx_copy(dst, d_src, bytes, cudaMemcpyDeviceToHost, "ds_cuda_ctx_download", err);
}
