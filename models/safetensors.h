/* safetensors.h - a validating reader for .safetensors files (mmap'd, header parsed with cJSON).
 *
 * Format: u64 little-endian header length N, N bytes of JSON (an object: name -> {"dtype", "shape",
 * "data_offsets": [begin, end]}, plus an optional "__metadata__" object of strings), then the data
 * buffer. Everything is validated at open, before any tensor is touched: header length against the
 * file size, well-formed JSON object, known dtype, shape entries non-negative integers, shape
 * product × dtype size == end − begin (checked for overflow), ranges inside the data buffer, no
 * overlaps, no holes (the tensors tile the buffer exactly, as the reference implementation
 * requires), no duplicate names. A malformed file returns DS_ERR_FORMAT with a message naming the
 * file and the problem; nothing is ever read out of bounds. */
#ifndef DS_SAFETENSORS_H
#define DS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

/* Every dtype string the format defines (only F32/F16/BF16 convert to compute dtypes). */
typedef enum ds_st_dtype {
    DS_ST_F64 = 0, DS_ST_F32, DS_ST_F16, DS_ST_BF16,
    DS_ST_I64, DS_ST_I32, DS_ST_I16, DS_ST_I8,
    DS_ST_U64, DS_ST_U32, DS_ST_U16, DS_ST_U8,
    DS_ST_BOOL, DS_ST_F8_E4M3, DS_ST_F8_E5M2,
    DS_ST_DTYPE_COUNT
} ds_st_dtype;

typedef struct ds_st_tensor {
    const char *name;              /* owned by the ds_safetensors */
    ds_st_dtype dtype;
    int         ndim;              /* 0..DS_MAX_DIMS */
    int64_t     shape[DS_MAX_DIMS];
    const void *data;              /* inside the mapping; may be unaligned */
    size_t      nbytes;
} ds_st_tensor;

typedef struct ds_safetensors ds_safetensors; /* opaque */

/* Largest header accepted (the reference reader's limit). */
#define DS_ST_MAX_HEADER (100u * 1000u * 1000u)

/* Open and validate `path` (read-only mmap). On success *out owns the mapping; free it with
 * ds_safetensors_close. Errors: DS_ERR_IO (cannot open/map), DS_ERR_FORMAT (malformed: the message
 * names the file and the problem), DS_ERR_UNSUPPORTED (more than DS_MAX_DIMS dims), DS_ERR_OOM. */
ds_status ds_safetensors_open(const char *path, ds_safetensors **out, ds_err *err);

/* Validate an in-memory image `buf[0..len)` (not copied: it must outlive the handle). `label` names
 * it in error messages. Same errors as ds_safetensors_open (no DS_ERR_IO). Used by the fuzzer. */
ds_status ds_safetensors_parse(const void *buf, size_t len, const char *label, ds_safetensors **out, ds_err *err);

/* Release the handle (and unmap the file). NULL is allowed. */
void ds_safetensors_close(ds_safetensors *st);

/* Number of tensors, and the i-th in data-offset order (0 <= i < count). */
int64_t ds_safetensors_count(const ds_safetensors *st);
const ds_st_tensor *ds_safetensors_at(const ds_safetensors *st, int64_t i);

/* Tensor by name, or NULL. */
const ds_st_tensor *ds_safetensors_find(const ds_safetensors *st, const char *name);

/* Value of a "__metadata__" string entry, or NULL. */
const char *ds_safetensors_metadata(const ds_safetensors *st, const char *key);

/* The label (path) given at open. */
const char *ds_safetensors_label(const ds_safetensors *st);

/* "F32", "BF16", ... */
const char *ds_st_dtype_name(ds_st_dtype t);

/* Bytes per element of a safetensors dtype. */
size_t ds_st_dtype_size(ds_st_dtype t);

/* Copy tensor `name` into dst (capacity dst_bytes) converted to `dtype` (F32/F16/BF16 sources
 * only). If `expect_shape` is non-NULL the stored shape must equal it (expect_ndim dims).
 * Errors: DS_ERR_NOT_FOUND (no such tensor), DS_ERR_UNSUPPORTED (source dtype), DS_ERR_INVALID_ARG
 * (shape mismatch or dst too small) - messages name the file and the tensor. */
ds_status ds_safetensors_read(const ds_safetensors *st, const char *name, ds_dtype dtype, void *dst, size_t dst_bytes,
                              int expect_ndim, const int64_t *expect_shape, ds_err *err);


/* One tensor to write: name, contiguous f32/f16/bf16 CPU data and shape (ds_tensor). */
typedef struct ds_st_entry {
    const char      *name;
    const ds_tensor *tensor;
} ds_st_entry;

/* Write a safetensors file at `path` (replaced) with the given tensors, in the order given, and
 * optional string metadata (meta_kv: n_meta key/value pairs, may be NULL). The header is padded to a
 * multiple of 8 bytes; tensors must be contiguous CPU tensors. Errors: DS_ERR_INVALID_ARG (duplicate
 * or empty name, non-contiguous or device tensor), DS_ERR_IO naming the path, DS_ERR_OOM. */
ds_status ds_safetensors_write(const char *path, const ds_st_entry *entries, int n, const char *const *meta_kv,
                               int n_meta, ds_err *err);

#endif /* DS_SAFETENSORS_H */
