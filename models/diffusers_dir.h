/* diffusers_dir.h - loader for a diffusers pipeline directory (what `save_pretrained` writes).
 *
 * Layout:  <dir>/model_index.json          {"_class_name": "DiTPipeline", "vae": ["diffusers",
 *                                           "AutoencoderKL"], "safety_checker": [null, null], ...}
 *          <dir>/<component>/config.json    (models; schedulers have scheduler_config.json)
 *          <dir>/<component>/diffusion_pytorch_model.safetensors   or model.safetensors
 *          or, sharded: <dir>/<component>/<...>.safetensors.index.json {"weight_map": {name: shard}}
 *
 * ds_diffusers_open parses model_index.json only; components are loaded on first request
 * (config parsed, every weight file opened and validated once) and cached in the pipeline handle.
 * Weights are looked up by their diffusers checkpoint key ("transformer_blocks.0.attn1.to_q.weight")
 * through ds_weights_find / ds_weights_read, whether they live in one file or in shards.
 * Components saved only as PyTorch pickles (.bin) are rejected with DS_ERR_UNSUPPORTED and a
 * message saying how to convert them: load with diffusers and re-save with
 * `save_pretrained(path, safe_serialization=True)`.
 *
 * Thread safety: a ds_diffusers handle is not thread-safe while components are being loaded; a
 * loaded ds_component (config + weights) is read-only and may be shared between threads. */
#ifndef DS_DIFFUSERS_DIR_H
#define DS_DIFFUSERS_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "safetensors.h"
#include "status.h"

/* ---- JSON configs --------------------------------------------------------------------------- */

typedef struct ds_config ds_config; /* opaque: a parsed JSON object plus the file it came from */

/* Read and parse the JSON file `path`; its root must be an object. Errors: DS_ERR_NOT_FOUND (no
 * such file), DS_ERR_IO (unreadable, or larger than 64 MiB), DS_ERR_FORMAT (invalid JSON or not an
 * object; the message names the file), DS_ERR_OOM. Free with ds_config_close. */
ds_status ds_config_open(const char *path, ds_config **out, ds_err *err);

/* Parse text[0..len) (need not be NUL-terminated); `label` names it in messages. Same errors as
 * ds_config_open minus the I/O ones. */
ds_status ds_config_parse(const char *text, size_t len, const char *label, ds_config **out, ds_err *err);

/* Free a config (NULL allowed). Strings and cJSON nodes obtained from it die with it. */
void ds_config_close(ds_config *cfg);

/* The root object (owned by cfg) for keys without a typed getter (lists, nested objects). */
const cJSON *ds_config_root(const ds_config *cfg);

/* The file name given at open (or the parse label). */
const char *ds_config_label(const ds_config *cfg);

/* True if `key` is present with a non-null value. */
bool ds_config_has(const ds_config *cfg, const char *key);

/* Typed getters for top-level keys. A missing key or a JSON null yields `def`. A present value of
 * the wrong type fails with DS_ERR_FORMAT ("<file>: key 'x': expected an integer, got a string").
 * get_int accepts only integral numbers with |v| < 2^53; get_float any number; get_bool true/false;
 * get_string a string (the returned pointer is owned by cfg; `def` is returned as is). */
ds_status ds_config_get_int(const ds_config *cfg, const char *key, int64_t def, int64_t *out, ds_err *err);
ds_status ds_config_get_float(const ds_config *cfg, const char *key, double def, double *out, ds_err *err);
ds_status ds_config_get_bool(const ds_config *cfg, const char *key, bool def, bool *out, ds_err *err);
ds_status ds_config_get_string(const ds_config *cfg, const char *key, const char *def, const char **out,
                               ds_err *err);

/* An array of integers (e.g. "block_out_channels": [128, 256, 512, 512]) into out[0..cap); the
 * length into *n. Missing key or null: *n = 0 and DS_OK. Errors: DS_ERR_FORMAT (not an array of
 * integers), DS_ERR_INVALID_ARG (more than cap entries). */
ds_status ds_config_get_int_array(const ds_config *cfg, const char *key, int64_t *out, int cap, int *n, ds_err *err);

/* ---- weights (one file or shards) ------------------------------------------------------------ */

typedef struct ds_weights ds_weights; /* opaque: one or more open safetensors files */

/* Open the weights of a model directory `dir`, trying in order:
 *   diffusion_pytorch_model.safetensors, model.safetensors,
 *   diffusion_pytorch_model.safetensors.index.json, model.safetensors.index.json.
 * For an index every shard named in "weight_map" is opened and validated once; each entry must
 * name a plain file name in `dir` that exists and holds that tensor.
 * Errors: DS_ERR_NOT_FOUND (no weight file at all), DS_ERR_UNSUPPORTED (only .bin pickles: the
 * message says how to convert), DS_ERR_FORMAT (malformed file or index, missing shard, weight_map
 * naming a tensor absent from its shard, duplicate keys; messages name the file), DS_ERR_IO,
 * DS_ERR_OOM. Free with ds_weights_close. */
ds_status ds_weights_open(const char *dir, ds_weights **out, ds_err *err);

/* Seeded random weights for --random-weights (benchmarks, smoke tests without a checkpoint): finds
 * always succeed (with a placeholder entry, count 0) and ds_weights_read synthesizes a tensor of the
 * expected shape, which it therefore requires. Values: N(0, 1/fan_in) for matrices and convolutions,
 * 1 + 0.02 N for 1-D norm weights, 0.02 N for other vectors, from a stream keyed by seed and tensor
 * name. `label` names the model in messages. Errors: DS_ERR_OOM. */
ds_status ds_weights_open_random(uint64_t seed, const char *label, ds_weights **out, ds_err *err);

/* Free the weights and unmap every file (NULL allowed). */
void ds_weights_close(ds_weights *w);

/* The weight file (single) or index file (sharded) the weights came from. */
const char *ds_weights_label(const ds_weights *w);

/* Number of shards (1 for a single file). */
int ds_weights_shard_count(const ds_weights *w);

/* Number of tensors, and the i-th (0 <= i < count; name order for shards, offset order for a single
 * file), or NULL out of range. */
int64_t ds_weights_count(const ds_weights *w);
const ds_st_tensor *ds_weights_at(const ds_weights *w, int64_t i);

/* Tensor by diffusers checkpoint key, or NULL. O(log n). The pointer lives as long as w. */
const ds_st_tensor *ds_weights_find(const ds_weights *w, const char *name);

/* Like ds_weights_find with a printf-formatted key ("transformer_blocks.%d.attn1.to_q.weight"). */
const ds_st_tensor *ds_weights_findf(const ds_weights *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Copy tensor `name` into dst converted to `dtype`; same contract and errors as ds_safetensors_read
 * (DS_ERR_NOT_FOUND names the weights label; other messages name the shard file). */
ds_status ds_weights_read(const ds_weights *w, const char *name, ds_dtype dtype, void *dst, size_t dst_bytes,
                          int expect_ndim, const int64_t *expect_shape, ds_err *err);

/* ---- pipeline directory ---------------------------------------------------------------------- */

typedef struct ds_component {
    const char *name;       /* "vae" */
    const char *library;    /* "diffusers", "transformers" */
    const char *class_name; /* "AutoencoderKL" */
    const char *path;       /* "<dir>/vae" */
    ds_config  *config;     /* config.json, else scheduler_config.json; NULL if the component has neither */
    ds_weights *weights;    /* NULL for components without weights (schedulers, tokenizers) */
} ds_component;

typedef struct ds_diffusers ds_diffusers; /* opaque */

/* Open the pipeline directory `dir`: read model_index.json, which must be an object with a string
 * "_class_name"; entries [library, class] are components, [null, null] marks an absent one, other
 * keys are kept (see ds_diffusers_index). Errors: DS_ERR_NOT_FOUND (no model_index.json),
 * DS_ERR_FORMAT (malformed: invalid JSON, no _class_name, a component entry mixing null and a
 * string), DS_ERR_IO, DS_ERR_OOM. Free with ds_diffusers_close. */
ds_status ds_diffusers_open(const char *dir, ds_diffusers **out, ds_err *err);

/* From now on, components that have a config.json get seeded random weights (ds_weights_open_random)
 * instead of reading weight files, which need not exist. Call before the first ds_diffusers_component. */
void ds_diffusers_set_random_weights(ds_diffusers *pipe, uint64_t seed);

/* Free the pipeline and every loaded component (NULL allowed). */
void ds_diffusers_close(ds_diffusers *pipe);

/* "_class_name" of model_index.json ("DiTPipeline", "PixArtAlphaPipeline", ...). */
const char *ds_diffusers_class(const ds_diffusers *pipe);

/* The directory given at open. */
const char *ds_diffusers_dir(const ds_diffusers *pipe);

/* The parsed model_index.json (owned by pipe): for plain keys such as "id2label". */
const cJSON *ds_diffusers_index(const ds_diffusers *pipe);

/* Components listed with a [library, class] pair (absent [null, null] ones excluded), in file
 * order: count, and the i-th name (NULL out of range). */
int ds_diffusers_component_count(const ds_diffusers *pipe);
const char *ds_diffusers_component_name(const ds_diffusers *pipe, int i);

/* True if model_index.json lists `name` as a present component. */
bool ds_diffusers_has_component(const ds_diffusers *pipe, const char *name);

/* Load (first call) or return (later calls) component `name`: its config and weights. *out is owned
 * by pipe. A component with config.json must have weights; one with only scheduler_config.json or
 * no config gets weights NULL. Errors: DS_ERR_NOT_FOUND (not listed, listed as [null, null], or its
 * directory is missing), plus those of ds_config_open and ds_weights_open. A failed load is not
 * cached: a later call retries. */
ds_status ds_diffusers_component(ds_diffusers *pipe, const char *name, const ds_component **out, ds_err *err);

#endif /* DS_DIFFUSERS_DIR_H */
