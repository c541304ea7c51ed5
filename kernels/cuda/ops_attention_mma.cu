// ops_attention_mma.cu - launches the tensor-core attention tile (attention_mma.cuh) for bf16/f16 head
// dims up to 128 (padded to DP = 32, 64, 80 or 128). ds_cuda_op_attention (ops_attention.cu) decides when
// this path is taken; see ds_cuda_attn_path in ds_cuda_ops.h.
#include "cuda_util.cuh"
#include "mma_prims.cuh"
// mma_prims.cuh defines the primitives the tile is written against.
#include "attention_mma.cuh"

template <bool BF16, int DP>
__global__ void __launch_bounds__(ATT_MMA_THREADS) attention_mma_kernel(ds_attn_mma_args a) {
    extern __shared__ __align__(16) uint16_t ds_attn_smem[];
    ds_attention_mma_tile<BF16, DP>(a, (int64_t)blockIdx.x, (int)threadIdx.x, ds_attn_smem);
}

template <bool BF16, int DP>
static ds_status launch_mma(const ds_attn_mma_args &a, int64_t blocks, cudaStream_t stream, const char *op,
                            ds_err *err) {
    const size_t smem = ds_attn_mma_smem_bytes(DP);
    const cudaError_t e =
        cudaFuncSetAttribute(attention_mma_kernel<BF16, DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "%s: %zu bytes of shared memory for the tensor-core tile: %s", op, smem,
                       cudaGetErrorString(e));
    }
    attention_mma_kernel<BF16, DP><<<(unsigned)blocks, ATT_MMA_THREADS, smem, stream>>>(a);
    return ds_cuda_launched(op, err);
}

template <bool BF16>
static ds_status dispatch_dp(const ds_attn_mma_args &a, int64_t blocks, cudaStream_t stream, const char *op,
                             ds_err *err) {
    if (a.d <= 32) return launch_mma<BF16, 32>(a, blocks, stream, op, err);
    if (a.d <= 64) return launch_mma<BF16, 64>(a, blocks, stream, op, err);
    if (a.d <= 80) return launch_mma<BF16, 80>(a, blocks, stream, op, err);  // DiT-XL/2: d = 72
    return launch_mma<BF16, 128>(a, blocks, stream, op, err);                // FLUX: d = 128
}

extern "C++" bool ds_cuda_attention_mma_eligible(const ds_tensor *out, const ds_tensor *q, const ds_tensor *k,
                                                  const ds_tensor *v, const ds_tensor *mask) {
    const int64_t d = q->shape[3];
    if (mask || (q->dtype != DS_BF16 && q->dtype != DS_F16)) return false;
    if (d % 8 != 0 || d > ATT_MMA_MAX_D) return false;
    const uintptr_t bits = (uintptr_t)out->data | (uintptr_t)q->data | (uintptr_t)k->data | (uintptr_t)v->data;
    return (bits & 15u) == 0;
}

extern "C++" ds_status ds_cuda_attention_mma(ds_tensor *out, const ds_tensor *q, const ds_tensor *k,
                                             const ds_tensor *v, float sc2, cudaStream_t stream, const char *op,
                                             ds_err *err) {
    ds_attn_mma_args a;
    a.out = (uint16_t *)out->data;
    a.q = (const uint16_t *)q->data;
    a.k = (const uint16_t *)k->data;
    a.v = (const uint16_t *)v->data;
    a.Nq = q->shape[1];
    a.Nk = k->shape[1];
    a.H = q->shape[2];
    a.d = (int)q->shape[3];
    a.sc2 = sc2;
    a.q_tiles = (a.Nq + ATT_MMA_BQ - 1) / ATT_MMA_BQ;
    const int64_t blocks = q->shape[0] * a.H * a.q_tiles;
    if (blocks > 0x7fffffffLL)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %lld thread blocks exceed the grid limit", op, (long long)blocks);
    return q->dtype == DS_BF16 ? dispatch_dp<true>(a, blocks, stream, op, err)
                               : dispatch_dp<false>(a, blocks, stream, op, err);
}
