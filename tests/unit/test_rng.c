/* test_rng.c - the Philox/Box-Muller noise generator: reproducible per seed, independent of thread
 * count and of how the range is split, and N(0,1) over 1M samples. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

Test(rng, philox_known_answer) {
    /* Random123 known-answer vectors for philox4x32-10. */
    uint32_t out[4];
    ds_rng_philox4x32((uint32_t[]){0, 0, 0, 0}, (uint32_t[]){0, 0}, out);
    cr_assert_eq(out[0], 0x6627e8d5u);
    cr_assert_eq(out[1], 0xe169c58du);
    cr_assert_eq(out[2], 0xbc57ac4cu);
    cr_assert_eq(out[3], 0x9b00dbd8u);
    ds_rng_philox4x32((uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                      (uint32_t[]){0xffffffffu, 0xffffffffu}, out);
    cr_assert_eq(out[0], 0x408f276du);
    cr_assert_eq(out[1], 0x41c83b0eu);
    cr_assert_eq(out[2], 0xa20bc7c6u);
    cr_assert_eq(out[3], 0x6d5451fdu);
}

Test(rng, same_seed_same_tensor_any_thread_count_any_split) {
    const int64_t n = 300007; /* odd, above the threading threshold */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    ds_rng_normal(1234, 0, a, n);
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    ds_rng_normal(1234, 0, b, n);
#ifdef _OPENMP
    omp_set_num_threads(3);
#endif
    /* the same stream in three uneven pieces */
    ds_rng_normal(1234, 0, c, 5);
    ds_rng_normal(1234, 5, c + 5, 100002);
    ds_rng_normal(1234, 100007, c + 100007, n - 100007);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    cr_assert(memcmp(a, b, n * sizeof(float)) == 0, "1 thread differs");
    cr_assert(memcmp(a, c, n * sizeof(float)) == 0, "split/3 threads differ");
    ds_rng_normal(1235, 0, b, n);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) same += a[i] == b[i];
    cr_assert_lt(same, 10, "seed 1235 repeats seed 1234 in %lld places", (long long)same);
    free(a);
    free(b);
    free(c);
}

Test(rng, gaussian_moments_over_1m_samples) {
    const int64_t n = 1 << 20;
    float *x = malloc(n * sizeof(float));
    ds_rng_normal(42, 0, x, n);
    double s = 0, s2 = 0, s4 = 0;
    int64_t beyond3 = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(isfinite(x[i]));
        s += x[i];
        s2 += (double)x[i] * x[i];
        s4 += (double)x[i] * x[i] * x[i] * x[i];
        beyond3 += fabs(x[i]) > 3.0;
    }
    double mean = s / n, var = s2 / n - mean * mean, sd = sqrt(var);
    cr_assert_lt(fabs(mean), 0.005, "mean %g", mean);
    cr_assert_lt(fabs(sd - 1.0), 0.005, "std %g", sd);
    double kurt = s4 / n / (var * var); /* 3 for a Gaussian; 1M samples: sd of the estimate ~0.005 */
    cr_assert_lt(fabs(kurt - 3.0), 0.05, "kurtosis %g", kurt);
    double p3 = (double)beyond3 / n; /* P(|z| > 3) = 0.0026998 */
    cr_assert_lt(fabs(p3 - 0.0026998), 0.0003, "tail mass %g", p3);
    free(x);
}

Test(rng, uniform_in_unit_interval_and_consistent_with_normal_stream) {
    const int64_t n = 4096;
    float u[4096];
    ds_rng_uniform(7, 3, u, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(u[i] > 0.0f && u[i] <= 1.0f);
        s += u[i];
    }
    cr_assert_lt(fabs(s / n - 0.5), 0.02);
    /* element i of the normal stream is Box-Muller of uniforms of the same Philox block */
    float z[2], uu[2];
    ds_rng_normal(7, 4, z, 2);
    ds_rng_uniform(7, 4, uu, 2);
    double r = sqrt(-2.0 * log((double)uu[0]));
    cr_assert_lt(fabs(z[0] - r * cos(2 * M_PI * uu[1])), 1e-5);
}
