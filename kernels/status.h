/* status.h - ditserve's error convention: a status enum plus a caller-owned message buffer.
 *
 * Every fallible function returns ds_status and takes a `ds_err *err` (may be NULL) that receives
 * a human-readable message naming the cause and the file:line that raised it. There is no global
 * error string: each request/thread owns its ds_err. */
#ifndef DS_STATUS_H
#define DS_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ds_status {
    DS_OK = 0,
    DS_ERR_INVALID_ARG,  /* caller passed a bad value, shape, dtype or device */
    DS_ERR_OOM,          /* host or device allocation failed, or an arena is exhausted */
    DS_ERR_IO,           /* open/read/mmap failed */
    DS_ERR_FORMAT,       /* a file or document is malformed (safetensors, JSON config) */
    DS_ERR_UNSUPPORTED,  /* well-formed but not supported (dtype, model class, op on a device) */
    DS_ERR_NOT_FOUND,    /* a named tensor, file or entry does not exist */
    DS_ERR_DEVICE,       /* CUDA / cuBLASLt / NCCL runtime error */
    DS_ERR_BUSY,         /* a bounded resource (queue) is full */
    DS_ERR_CANCELLED,    /* the operation was cancelled */
    DS_ERR_INTERNAL,     /* an invariant broke: a bug in ditserve */
    DS_STATUS_COUNT
} ds_status;

#define DS_ERR_MSG_LEN 512

typedef struct ds_err {
    ds_status   code;
    const char *file; /* source file that raised the error (static string) */
    int         line;
    char        msg[DS_ERR_MSG_LEN];
} ds_err;

/* Stable lower-case name of a status ("ok", "invalid_arg", ...). Never NULL. */
const char *ds_status_name(ds_status s);

/* Record an error in `err` (if non-NULL) and return `code`. The message is printf-formatted and
 * truncated to DS_ERR_MSG_LEN-1 bytes. Use through DS_FAIL so file/line are filled in. */
ds_status ds_err_set(ds_err *err, ds_status code, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Reset `err` to DS_OK with an empty message. NULL is allowed. */
void ds_err_clear(ds_err *err);

/* Prefix the message already in `err` with "<prefix>: " (used to add context such as a file name
 * while an error propagates up). No-op when err is NULL. */
void ds_err_prefix(ds_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* return DS_FAIL(err, DS_ERR_INVALID_ARG, "width %d is not a multiple of %d", w, p); */
#define DS_FAIL(err, code, ...) ds_err_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a non-OK status from an expression. */
#define DS_TRY(expr)                       \
    do {                                   \
        ds_status ds_try_s_ = (expr);      \
        if (ds_try_s_ != DS_OK) return ds_try_s_; \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* DS_STATUS_H */
