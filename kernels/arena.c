/* arena.c - bump allocator implementation (see arena.h). */
#include "arena.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda.h"
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_name(ds_arena *a, const char *name) { snprintf(a->name, sizeof a->name, "%s", name ? name : "arena"); }

ds_status ds_arena_init_host(ds_arena *a, size_t bytes, ds_arena_kind kind, const char *name, ds_err *err) {
    memset(a, 0, sizeof *a);
    set_name(a, name);
    a->kind = kind;
    a->device = ds_device_cpu();
    size_t rounded = (bytes + DS_ARENA_ALIGN - 1) / DS_ARENA_ALIGN * DS_ARENA_ALIGN;
    if (rounded == 0) rounded = DS_ARENA_ALIGN;
    a->base = aligned_alloc(DS_ARENA_ALIGN, rounded);
    if (!a->base) return DS_FAIL(err, DS_ERR_OOM, "arena '%s': cannot allocate %zu bytes of host memory", a->name, bytes);
    a->cap = rounded;
    a->owns_base = 1;
    return DS_OK;
}

ds_status ds_arena_init_device(ds_arena *a, size_t bytes, ds_device device, ds_arena_kind kind, const char *name,
                               ds_err *err) {
    if (device.kind == DS_DEVICE_CPU) return ds_arena_init_host(a, bytes, kind, name, err);
    memset(a, 0, sizeof *a);
    set_name(a, name);
    a->kind = kind;
    a->device = device;
#ifdef DS_HAVE_CUDA
    size_t rounded = (bytes + DS_ARENA_ALIGN - 1) / DS_ARENA_ALIGN * DS_ARENA_ALIGN;
    if (rounded == 0) rounded = DS_ARENA_ALIGN;
    void *d = NULL;
    ds_status s = ds_cuda_set_device(device.index, err);
    if (s == DS_OK) s = ds_cuda_malloc(&d, rounded, err); /* cudaMalloc: 256-byte aligned */
    if (s != DS_OK) {
        ds_err_prefix(err, "arena '%s' on cuda:%d", a->name, device.index);
        return s;
    }
    a->base = d;
    a->cap = rounded;
    a->owns_base = 2;
    return DS_OK;
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "arena '%s': this build has no CUDA backend", a->name);
#endif
}

void ds_arena_init_external(ds_arena *a, void *base, size_t bytes, ds_device device, ds_arena_kind kind,
                            const char *name) {
    memset(a, 0, sizeof *a);
    set_name(a, name);
    a->base = base;
    a->cap = bytes;
    a->kind = kind;
    a->device = device;
}

void ds_arena_init_plan(ds_arena *a, ds_arena_kind kind, const char *name) {
    memset(a, 0, sizeof *a);
    set_name(a, name);
    a->cap = SIZE_MAX / 2;
    a->kind = kind;
    a->device = ds_device_cpu();
}

ds_status ds_arena_alloc(ds_arena *a, size_t bytes, size_t align, void **out, ds_err *err) {
    if (align == 0) align = DS_ARENA_ALIGN;
    if (align & (align - 1)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "arena '%s': alignment %zu is not a power of two", a->name, align);
    /* Align the absolute address for real arenas, the offset for plan arenas. */
    uintptr_t at = (uintptr_t)a->base + a->used;
    size_t pad = (size_t)((align - (at & (align - 1))) & (align - 1));
    if (bytes > a->cap || pad > a->cap - bytes || a->used > a->cap - bytes - pad)
        return DS_FAIL(err, DS_ERR_OOM, "arena '%s': request of %zu bytes does not fit (%zu of %zu used)", a->name, bytes,
                       a->used, a->cap);
    *out = a->base ? a->base + a->used + pad : (void *)(uintptr_t)(a->used + pad);
    a->used += pad + bytes;
    if (a->used > a->high_water) a->high_water = a->used;
    return DS_OK;
}

ds_status ds_arena_tensor(ds_arena *a, ds_dtype dtype, int ndim, const int64_t *shape, ds_tensor *out, ds_err *err) {
    if (ndim < 0 || ndim > DS_MAX_DIMS) return DS_FAIL(err, DS_ERR_INVALID_ARG, "arena '%s': ndim %d out of range", a->name, ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return DS_FAIL(err, DS_ERR_INVALID_ARG, "arena '%s': negative dim %lld", a->name, (long long)shape[i]);
        if (shape[i] && n > SIZE_MAX / 8 / (size_t)shape[i])
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "arena '%s': tensor size overflows", a->name);
        n *= (size_t)shape[i];
    }
    void *p;
    DS_TRY(ds_arena_alloc(a, n * ds_dtype_size(dtype), 0, &p, err));
    *out = ds_tensor_make(p, dtype, ndim, shape);
    out->device = a->device;
    return DS_OK;
}

size_t ds_arena_mark(const ds_arena *a) { return a->used; }

void ds_arena_rewind(ds_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}

void ds_arena_free(ds_arena *a) {
#ifdef DS_HAVE_CUDA
    if (a->owns_base == 2) ds_cuda_free(a->base);
#endif
    if (a->owns_base == 1) free(a->base);
    memset(a, 0, sizeof *a);
}
