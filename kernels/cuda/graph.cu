// graph.cu - the CUDA runtime side of graph.h: stream capture on the current context's stream (thread-local
// mode, so an unsafe call such as a synchronisation inside the captured work fails the capture instead of
// the process), instantiation, replay and destruction, plus the per-context switch (ds_cuda_ctx_set_graphs).
#include <cuda_runtime.h>

#include "cuda_util.cuh"
#include "graph.h"

// Clears the runtime's last error (capture errors are not sticky) and reports e as DS_ERR_DEVICE.
static ds_status graph_fail(cudaError_t e, const char *what, ds_err *err) {
    (void)cudaGetLastError();
    return DS_FAIL(err, DS_ERR_DEVICE, "%s: %s", what, cudaGetErrorString(e));
}

static bool graph_active(void) {
    const ds_cuda_ctx *ctx = ds_cuda_ctx_current();
    return ctx && ds_cuda_ctx_graphs(ctx);
}

// The context settings that pick kernels inside captured work (ds_cuda_ctx_set_attention).
static uint64_t graph_salt(void) {
    const ds_cuda_ctx *ctx = ds_cuda_ctx_current();
    return ctx ? (uint64_t)ds_cuda_ctx_attention(ctx) + 1u : 0u;
}

static ds_status graph_begin(ds_err *err) {
    static const char op[] = "graph capture";
    DS_CUDA_STREAM(stream);
    const cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    return e == cudaSuccess ? DS_OK : graph_fail(e, "cudaStreamBeginCapture", err);
}

static ds_status graph_end(bool keep, void **exec, ds_err *err) {
    static const char op[] = "graph capture";
    *exec = NULL;
    DS_CUDA_STREAM(stream);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(stream, &g);
    if (e != cudaSuccess) {
        if (g) (void)cudaGraphDestroy(g);
        return graph_fail(e, "cudaStreamEndCapture (the work did something a graph cannot hold)", err);
    }
    if (!keep) {
        (void)cudaGraphDestroy(g);
        return DS_OK;
    }
    cudaGraphExec_t ge = NULL;
    e = cudaGraphInstantiate(&ge, g, 0ULL);
    (void)cudaGraphDestroy(g);
    if (e != cudaSuccess) return graph_fail(e, "cudaGraphInstantiate", err);
    *exec = (void *)ge;
    return DS_OK;
}

static ds_status graph_launch(void *exec, ds_err *err) {
    static const char op[] = "graph launch";
    DS_CUDA_STREAM(stream);
    const cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)exec, stream);
    return e == cudaSuccess ? DS_OK : graph_fail(e, "cudaGraphLaunch", err);
}

static void graph_destroy(void *exec) {
    if (exec) (void)cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

extern "C" const ds_graph_backend *ds_cuda_graph_backend(void) {
    static const ds_graph_backend be = {graph_active, graph_salt, graph_begin, graph_end, graph_launch, graph_destroy};
    return &be;
}
