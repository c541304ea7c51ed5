// mma_prims.cuh - the device side of the warp primitives that attention_mma.cuh is written against:
// 16-byte global loads, cp.async copies, ldmatrix (.trans), mma.sync m16n8k16 with fp32 accumulation (bf16 or
// f16 inputs), xor shuffles and packing two floats to two 16-bit values. sm_80 and newer (the PTX is the same on sm_90).
// The host twin of each, for the SIMT emulator in the tests, is in tests/emu/simt_emu.h.
#ifndef DS_MMA_PRIMS_CUH
#define DS_MMA_PRIMS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define DS_MMA_FN __device__ __forceinline__

typedef uint4 ds_u4;

DS_MMA_FN ds_u4 ds_ld16(const uint16_t *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
DS_MMA_FN void ds_st16(uint16_t *p, ds_u4 v) { *reinterpret_cast<uint4 *>(p) = v; }
DS_MMA_FN void ds_st32(uint16_t *p, uint32_t v) { *reinterpret_cast<uint32_t *>(p) = v; }
DS_MMA_FN void ds_sync() { __syncthreads(); }
DS_MMA_FN float ds_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
DS_MMA_FN float ds_exp2(float x) { return exp2f(x); }

// cp.async (sm_80+): 16 bytes global -> shared without passing through registers, in flight until waited
// for. ds_cp_async_commit closes a group; ds_cp_async_wait<N> waits until at most N groups of this thread
// are still in flight (other threads' copies become visible after a barrier).
DS_MMA_FN void ds_cp_async16(uint16_t *smem, const uint16_t *gmem) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(gmem) : "memory");
}
DS_MMA_FN void ds_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
DS_MMA_FN void ds_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

DS_MMA_FN void ds_ldsm_x4(uint32_t r[4], const uint16_t *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

DS_MMA_FN void ds_ldsm_x4_t(uint32_t r[4], const uint16_t *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

template <bool BF16>
DS_MMA_FN void ds_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);

template <>
DS_MMA_FN void ds_mma16816<true>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
DS_MMA_FN void ds_mma16816<false>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <bool BF16>
DS_MMA_FN uint32_t ds_pack2(float lo, float hi);

template <>
DS_MMA_FN uint32_t ds_pack2<true>(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low half), .y = hi
    return *reinterpret_cast<const uint32_t *>(&v);
}

template <>
DS_MMA_FN uint32_t ds_pack2<false>(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
}

#endif  // DS_MMA_PRIMS_CUH
