/* gpu_rng.c - GPU twin test of the Gaussian RNG: ds_cuda_rng_normal vs the CPU ds_rng_normal for
 * several (seed, offset, n), including offsets that are not multiples of 4, counters above 2^32 and
 * n = 1, 3, 1000003. Every element must agree within 1e-6 absolute (bit identity is not required),
 * and the kernel must write exactly [0, n): the output buffer has 0xFF guard bytes on both sides that
 * must survive, and the output itself is poisoned with NaN first. Exit 77 without a device. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_common.h"
#include "gpu_tolerances.h"
#include "rng.h"

#define GUARD 16 /* floats of guard before and after the output */

typedef struct rng_case {
    uint64_t seed, offset;
    int64_t n;
} rng_case;

static void run_case(const rng_case *c) {
    char name[128];
    snprintf(name, sizeof name, "seed%llu_off%llu_n%lld", (unsigned long long)c->seed,
             (unsigned long long)c->offset, (long long)c->n);
    const size_t total = (size_t)c->n + 2 * GUARD;
    float *ref = malloc((size_t)c->n * sizeof *ref);
    float *got = malloc(total * sizeof *got);
    double *refd = malloc((size_t)c->n * sizeof *refd);
    void *d = NULL;
    ds_err e = {0};
    if (!GPU_CHECK(ref && got && refd, "host allocation of %zu floats", total)) goto done;
    if (!GPU_OK(ds_cuda_malloc(&d, total * sizeof(float), &e), &e)) goto done;
    if (!gpu_poison(d, total * sizeof(float))) goto done;

    if (!GPU_OK(ds_cuda_rng_normal(c->seed, c->offset, (float *)d + GUARD, c->n, NULL, &e), &e)) goto done;
    if (!GPU_OK(ds_cuda_synchronize(&e), &e)) goto done;
    if (!GPU_OK(ds_cuda_memcpy_d2h(got, d, total * sizeof(float), &e), &e)) goto done;

    ds_rng_normal(c->seed, c->offset, ref, c->n);
    for (int64_t i = 0; i < c->n; i++) refd[i] = (double)ref[i];
    GPU_CHECK(gpu_all_ff(got, GUARD * sizeof(float)), "%s: wrote before the output", name);
    GPU_CHECK(gpu_all_ff(got + GUARD + c->n, GUARD * sizeof(float)), "%s: wrote past the output", name);
    gpu_compare("gpu_rng", name, got + GUARD, refd, c->n,
                (gpu_tol){GPU_TOL_RNG_REL, GPU_TOL_RNG_ATOL, GPU_TOL_RNG_RTOL});
done:
    ds_cuda_free(d);
    free(ref);
    free(got);
    free(refd);
}

int main(void) {
    gpu_require_device("gpu_rng");
    static const rng_case cases[] = {
        {0, 0, 1},
        {42, 0, 3},
        {42, 1, 3},           /* offset inside a Philox block, ends inside it */
        {42, 3, 1},           /* last lane of a block only */
        {7, 2, 5},            /* spans two blocks, partial on both ends */
        {123456789ull, 0, 1000003},
        {0xDEADBEEFCAFEF00Dull, 5, 1000003},   /* seed uses both key words */
        {99, (1ull << 34) + 3, 1001},           /* counter high word = 1 */
        {UINT64_MAX, 0xFFFFFFF0ull * 4 + 1, 4097}, /* counter crosses 2^32 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);

    /* Contract checks: n = 0 is a no-op, n < 0 is an argument error. */
    ds_err e = {0};
    GPU_CHECK(ds_cuda_rng_normal(1, 0, NULL, 0, NULL, &e) == DS_OK, "n = 0 must be a no-op");
    GPU_CHECK(ds_cuda_rng_normal(1, 0, NULL, -1, NULL, &e) == DS_ERR_INVALID_ARG, "n < 0 must be invalid_arg");
    return gpu_finish("gpu_rng");
}
