/* arena.h - bump allocators for weights and activations, planned once at load.
 *
 * An arena is one block of memory handed out front to back. The per-step path only takes memory
 * from arenas and rewinds them (mark/rewind), so it never calls malloc. A "plan" arena has no
 * memory: it records the high-water mark of a dry run so the real arena can be sized exactly.
 * Kinds: DS_ARENA_WEIGHTS (resident, filled at load) and DS_ARENA_ACTIVATIONS (scratch, rewound). */
#ifndef DS_ARENA_H
#define DS_ARENA_H

#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_ARENA_ALIGN 256 /* default alignment: fits AVX-512 and CUDA vector loads */

typedef enum ds_arena_kind { DS_ARENA_WEIGHTS = 0, DS_ARENA_ACTIVATIONS } ds_arena_kind;

typedef struct ds_arena {
    char         *base;       /* NULL for a plan arena */
    size_t        cap;        /* bytes available */
    size_t        used;       /* bytes handed out (including alignment padding) */
    size_t        high_water; /* max of used over the arena's life */
    ds_arena_kind kind;
    ds_device     device;     /* where base lives */
    int           owns_base;  /* 1: host memory from ds_arena_init_host, 2: device memory from ds_arena_init_device;
                                 ds_arena_free releases either; 0: external */
    char          name[32];
} ds_arena;

/* Allocate `bytes` of host memory (DS_ARENA_ALIGN-aligned) for the arena. Errors: DS_ERR_OOM. */
ds_status ds_arena_init_host(ds_arena *a, size_t bytes, ds_arena_kind kind, const char *name, ds_err *err);

/* Allocate `bytes` of memory on `device` for the arena: host memory for the CPU (as ds_arena_init_host),
 * cudaMalloc on device.index for CUDA (256-byte aligned; tensors from it carry that device). Errors:
 * DS_ERR_OOM (naming the arena and the size: a clean failure of the load that asked), DS_ERR_DEVICE,
 * DS_ERR_UNSUPPORTED on a build without CUDA. */
ds_status ds_arena_init_device(ds_arena *a, size_t bytes, ds_device device, ds_arena_kind kind, const char *name,
                               ds_err *err);

/* Wrap memory owned by someone else (e.g. a cudaMalloc block); ds_arena_free will not free it. */
void ds_arena_init_external(ds_arena *a, void *base, size_t bytes, ds_device device, ds_arena_kind kind,
                            const char *name);

/* A planning arena: allocations succeed without memory (pointers are NULL-based offsets that must not
 * be dereferenced) and high_water tells the size a real arena needs. */
void ds_arena_init_plan(ds_arena *a, ds_arena_kind kind, const char *name);

/* Take `bytes` aligned to `align` (a power of two; 0 means DS_ARENA_ALIGN). *out receives the
 * pointer. Errors: DS_ERR_OOM naming the arena, the request and what is left. */
ds_status ds_arena_alloc(ds_arena *a, size_t bytes, size_t align, void **out, ds_err *err);

/* Allocate a contiguous tensor of dtype/shape from the arena (device taken from the arena). */
ds_status ds_arena_tensor(ds_arena *a, ds_dtype dtype, int ndim, const int64_t *shape, ds_tensor *out,
                          ds_err *err);

/* Current fill level, to pass to ds_arena_rewind later. */
size_t ds_arena_mark(const ds_arena *a);

/* Release everything allocated after `mark`. */
void ds_arena_rewind(ds_arena *a, size_t mark);

/* Release the arena's memory if it owns it, and zero the struct. */
void ds_arena_free(ds_arena *a);

#ifdef __cplusplus
}
#endif

#endif /* DS_ARENA_H */
