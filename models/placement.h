/* placement.h - where a model lives and in which element type it computes: the CPU in f32 (the
 * reference), or one CUDA device in bf16 (default), f16 or f32. Every model load takes one; weights are
 * converted to the dtype once at load and uploaded, activations come from an arena on that device. */
#ifndef DS_PLACEMENT_H
#define DS_PLACEMENT_H

#include <stddef.h>

#include "diffusers_dir.h"
#include "dtype.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_placement {
    ds_device device; /* DS_DEVICE_CPU or DS_DEVICE_CUDA + ordinal */
    ds_dtype  dtype;  /* DS_F32 on the CPU; DS_BF16 / DS_F16 / DS_F32 on CUDA */
} ds_placement;

/* CPU, f32. */
ds_placement ds_placement_cpu(void);

/* pl itself, or CPU f32 when pl is NULL. */
ds_placement ds_placement_or_cpu(const ds_placement *pl);

/* The CPU backend computes in f32 only: DS_ERR_UNSUPPORTED for a CPU placement of another dtype;
 * DS_ERR_UNSUPPORTED for CUDA on a build without it. `what` names the model in the message. */
ds_status ds_placement_check(const ds_placement *pl, const char *what, ds_err *err);

/* "cpu f32", "cuda:0 bf16" into buf; returns buf. */
const char *ds_placement_str(const ds_placement *pl, char *buf, size_t len);

/* Fill dst (a tensor of the placement's dtype on its device, allocated by the caller, shape `shape`)
 * from checkpoint tensor `name` (shape-checked; any stored float type converted). On the CPU it reads
 * in place; on CUDA it reads into `staging` (host memory of at least dst's bytes) and uploads.
 * Errors: those of ds_weights_read; DS_ERR_INVALID_ARG when staging is too small; DS_ERR_DEVICE. */
ds_status ds_weights_read_placed(const ds_weights *w, const char *name, ds_tensor *dst, int ndim, const int64_t *shape,
                                 void *staging, size_t staging_bytes, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_PLACEMENT_H */
