/* api_error.h - mapping from ds_status to the HTTP status and the OpenAI-shaped error body
 * {"error": {"message", "type", "param", "code"}} that every failed API call returns. */
#ifndef DS_API_ERROR_H
#define DS_API_ERROR_H

#include "status.h"

typedef struct ds_api_error_kind {
    int         http_status; /* 400, 404, 413, 429, 500, 503, 507 ... */
    const char *type;        /* "invalid_request_error", "server_error", ... */
} ds_api_error_kind;

/* HTTP status and error type for a status code (DS_OK maps to 200). */
ds_api_error_kind ds_api_error_kind_of(ds_status s);

/* Render the error body into buf (always NUL-terminated JSON). `param` is the offending request
 * field or NULL (rendered as null). Returns the HTTP status to send. */
int ds_api_error_json(const ds_err *err, const char *param, char *buf, int len);

#endif /* DS_API_ERROR_H */
