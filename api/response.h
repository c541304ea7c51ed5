/* response.h - C results -> JSON replies: OpenAI-shaped error bodies with any HTTP status, the job status
 * object (GET /v1/jobs/{id}), the generation result (sync reply, SSE "done"), the statistics object
 * (GET /v1/stats/{id}), one step event, and the PNG of image k of a job (with its generation parameters in
 * tEXt chunks). Everything here runs on HTTP threads, off the workers. */
#ifndef DS_RESPONSE_H
#define DS_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "status.h"

/* The OpenAI error body {"error": {"message", "type", "param", "code"}} as a malloc'd string (NULL on OOM).
 * param NULL renders as null. */
char *ds_api_error_body(const char *message, const char *type, const char *param, const char *code);

/* PNG of image k (0-based) of a finished job into a malloc'd *png of *len bytes. Errors: DS_ERR_NOT_FOUND
 * (k out of range), DS_ERR_UNSUPPORTED (built without libpng), DS_ERR_OOM. */
ds_status ds_api_job_png(const ds_job *j, int k, uint8_t **png, size_t *len, ds_err *err);

/* Which image representation a result carries. */
typedef enum ds_api_images { DS_API_IMAGES_NONE = 0, DS_API_IMAGES_B64, DS_API_IMAGES_URL } ds_api_images;

/* The job as JSON (malloc'd string; NULL with err on failure). With a final snapshot of a done job it is
 * the full result: images (as base64 PNG, or URLs, per `images`), stats and timings; extra_ms (time spent
 * on HTTP threads before the reply, e.g. PNG encoding) is added to total_ms. `url_prefix` (may be "")
 * goes in front of "/v1/images/...". */
char *ds_api_job_json(const ds_job *j, const ds_job_snapshot *snap, ds_api_images images, const char *url_prefix,
                      ds_err *err);

/* GET /v1/stats/{id} for a finished job (malloc'd). */
char *ds_api_stats_json(const ds_job *j, const ds_job_snapshot *snap, ds_err *err);

/* One SSE "step" event's data (malloc'd, single line). */
char *ds_api_step_json(const ds_job *j, const ds_job_step_event *ev);

/* The effective cache config with every field (a cJSON object, caller deletes). */
struct cJSON *ds_api_cache_config_json(const ds_cache_config *c);

/* Add "seed": <seed> to obj as an exact integer literal (not through a double). */
void ds_api_add_seed(struct cJSON *obj, uint64_t seed);

#endif /* DS_RESPONSE_H */
