/* api_error.c - ds_status -> HTTP status / OpenAI error JSON (see api_error.h). */
#include "api_error.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

ds_api_error_kind ds_api_error_kind_of(ds_status s) {
    switch (s) {
    case DS_OK: return (ds_api_error_kind){200, "ok"};
    case DS_ERR_INVALID_ARG:
    case DS_ERR_FORMAT: return (ds_api_error_kind){400, "invalid_request_error"};
    case DS_ERR_NOT_FOUND: return (ds_api_error_kind){404, "not_found_error"};
    case DS_ERR_UNSUPPORTED: return (ds_api_error_kind){422, "invalid_request_error"};
    case DS_ERR_BUSY: return (ds_api_error_kind){429, "rate_limit_error"};
    case DS_ERR_CANCELLED: return (ds_api_error_kind){499, "cancelled"};
    case DS_ERR_OOM: return (ds_api_error_kind){507, "server_error"};
    case DS_ERR_IO:
    case DS_ERR_DEVICE:
    case DS_ERR_INTERNAL:
    default: return (ds_api_error_kind){500, "server_error"};
    }
}

int ds_api_error_json(const ds_err *err, const char *param, char *buf, int len) {
    ds_status code = err ? err->code : DS_ERR_INTERNAL;
    ds_api_error_kind k = ds_api_error_kind_of(code);
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", err && err->msg[0] ? err->msg : ds_status_name(code));
    cJSON_AddStringToObject(e, "type", k.type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", ds_status_name(code));
    if (!cJSON_PrintPreallocated(root, buf, len, 0) && len > 0) {
        snprintf(buf, (size_t)len, "{\"error\":{\"message\":\"error too long\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}",
                 k.type, ds_status_name(code));
    }
    cJSON_Delete(root);
    return k.http_status;
}
