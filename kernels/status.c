/* status.c - status names and the error-message buffer helpers declared in status.h. */
#include "status.h"

#include <stdio.h>
#include <string.h>

const char *ds_status_name(ds_status s) {
    static const char *const names[DS_STATUS_COUNT] = {
        [DS_OK] = "ok",
        [DS_ERR_INVALID_ARG] = "invalid_arg",
        [DS_ERR_OOM] = "out_of_memory",
        [DS_ERR_IO] = "io",
        [DS_ERR_FORMAT] = "format",
        [DS_ERR_UNSUPPORTED] = "unsupported",
        [DS_ERR_NOT_FOUND] = "not_found",
        [DS_ERR_DEVICE] = "device",
        [DS_ERR_BUSY] = "busy",
        [DS_ERR_CANCELLED] = "cancelled",
        [DS_ERR_INTERNAL] = "internal",
    };
    if ((int)s < 0 || s >= DS_STATUS_COUNT) return "unknown";
    return names[s];
}

ds_status ds_err_set(ds_err *err, ds_status code, const char *file, int line, const char *fmt, ...) {
    if (err) {
        err->code = code;
        err->file = file;
        err->line = line;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void ds_err_clear(ds_err *err) {
    if (!err) return;
    err->code = DS_OK;
    err->file = NULL;
    err->line = 0;
    err->msg[0] = '\0';
}

void ds_err_prefix(ds_err *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[DS_ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t pl = strlen(prefix);
    if (pl + 2 >= sizeof err->msg) { memcpy(err->msg, prefix, sizeof err->msg - 1); err->msg[sizeof err->msg - 1] = 0; return; }
    size_t keep = strnlen(err->msg, sizeof err->msg - 1);
    if (keep > sizeof err->msg - 1 - pl - 2) keep = sizeof err->msg - 1 - pl - 2;
    memmove(err->msg + pl + 2, err->msg, keep);
    memcpy(err->msg, prefix, pl);
    err->msg[pl] = ':';
    err->msg[pl + 1] = ' ';
    err->msg[pl + 2 + keep] = '\0';
}
