/* diffusers_dir.c - the diffusers pipeline-directory loader declared in diffusers_dir.h: JSON
 * configs with typed getters, single-file and sharded safetensors weights with by-name lookup, and
 * the model_index.json component table with lazily loaded, cached components. */
#include "diffusers_dir.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rng.h"

#define DS_JSON_MAX_BYTES (64u << 20)

/* ---- small helpers ---------------------------------------------------------------------------- */

/* malloc'd "a/b" (NULL on OOM). */
static char *dd_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    size_t k = la;
    if (la && a[la - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, lb + 1);
    return p;
}

static bool dd_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool dd_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Read a whole (small) file into a malloc'd buffer. */
static ds_status dd_read_file(const char *path, char **buf, size_t *len, ds_err *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no such file", path);
        return DS_FAIL(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b) {
        fclose(f);
        return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= DS_JSON_MAX_BYTES) {
                free(b);
                fclose(f);
                return DS_FAIL(err, DS_ERR_IO, "%s: larger than %u bytes", path, DS_JSON_MAX_BYTES);
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                fclose(f);
                return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return DS_FAIL(err, DS_ERR_IO, "%s: read error", path);
    }
    *buf = b;
    *len = n;
    return DS_OK;
}

/* Python's json module (and so diffusers' save_config) writes the non-standard tokens NaN, Infinity and
 * -Infinity, e.g. "lambda_min_clipped": -Infinity in every DPMSolverMultistepScheduler config. cJSON
 * rejects them, so outside strings they are rewritten to the string DD_NONFINITE "<token>", which
 * ds_config_get_float maps back. Returns a NUL-terminated malloc'd copy (its length in *len) or NULL. */
#define DD_NONFINITE "\x01nonfinite:"
static char *dd_rewrite_nonfinite(const char *text, size_t *len) {
    static const char *const toks[] = {"-Infinity", "Infinity", "NaN"};
    size_t n = *len, extra = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] == 'I' || text[i] == 'N') extra += sizeof DD_NONFINITE + 2; /* upper bound per token */
    char *out = malloc(n + extra + 1);
    if (!out) return NULL;
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < n;) {
        char c = text[i];
        if (in_str) {
            out[o++] = c;
            i++;
            if (c == '\\' && i < n) out[o++] = text[i++];
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        size_t k = 0;
        for (; k < 3; k++) {
            size_t tl = strlen(toks[k]);
            if (tl <= n - i && !memcmp(text + i, toks[k], tl)) break;
        }
        if (k < 3) {
            o += (size_t)sprintf(out + o, "\"%s%s\"", DD_NONFINITE, toks[k]);
            i += strlen(toks[k]);
            continue;
        }
        out[o++] = c;
        i++;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* Parse JSON text[0..len) into a tree whose root must be an object. */
static ds_status dd_parse_json(const char *text, size_t len, const char *label, cJSON **out, ds_err *err) {
    *out = NULL;
    if (len && memchr(text, 0, len)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: contains a NUL byte", label);
    char *copy = dd_rewrite_nonfinite(text, &len);
    if (!copy) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    if (!root) {
        size_t at = (end && end >= copy && end <= copy + len) ? (size_t)(end - copy) : 0;
        free(copy);
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: invalid JSON (error near byte %zu)", label, at);
    }
    for (const char *p = end; p && p < copy + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - copy);
            cJSON_Delete(root);
            free(copy);
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: invalid JSON (trailing characters at byte %zu)", label, at);
        }
    free(copy);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: top-level JSON value is not an object", label);
    }
    *out = root;
    return DS_OK;
}

static ds_status dd_open_json(const char *path, cJSON **out, ds_err *err) {
    char *buf;
    size_t len;
    DS_TRY(dd_read_file(path, &buf, &len, err));
    ds_status s = dd_parse_json(buf, len, path, out, err);
    free(buf);
    return s;
}

static const char *dd_json_type(const cJSON *it) {
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    if (cJSON_IsNull(it)) return "null";
    return "an invalid value";
}

/* ---- configs ---------------------------------------------------------------------------------- */

struct ds_config {
    cJSON *root;
    char  *label;
};

static ds_status dd_config_wrap(cJSON *root, const char *label, ds_config **out, ds_err *err) {
    ds_config *c = calloc(1, sizeof *c);
    char *l = c ? strdup(label) : NULL;
    if (!c || !l) {
        free(c);
        cJSON_Delete(root);
        return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label);
    }
    c->root = root;
    c->label = l;
    *out = c;
    return DS_OK;
}

ds_status ds_config_open(const char *path, ds_config **out, ds_err *err) {
    if (!path || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_open: NULL argument");
    *out = NULL;
    cJSON *root;
    DS_TRY(dd_open_json(path, &root, err));
    return dd_config_wrap(root, path, out, err);
}

ds_status ds_config_parse(const char *text, size_t len, const char *label, ds_config **out, ds_err *err) {
    if (!out || (!text && len)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_parse: NULL argument");
    *out = NULL;
    if (!label) label = "<config>";
    cJSON *root;
    DS_TRY(dd_parse_json(text ? text : "", len, label, &root, err));
    return dd_config_wrap(root, label, out, err);
}

void ds_config_close(ds_config *cfg) {
    if (!cfg) return;
    cJSON_Delete(cfg->root);
    free(cfg->label);
    free(cfg);
}

const cJSON *ds_config_root(const ds_config *cfg) { return cfg ? cfg->root : NULL; }
const char *ds_config_label(const ds_config *cfg) { return cfg ? cfg->label : NULL; }

/* The value of key, or NULL when missing or JSON null. */
static const cJSON *dd_cfg_item(const ds_config *cfg, const char *key) {
    if (!cfg || !key) return NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cfg->root, key);
    return (it && !cJSON_IsNull(it)) ? it : NULL;
}

bool ds_config_has(const ds_config *cfg, const char *key) { return dd_cfg_item(cfg, key) != NULL; }

static bool dd_json_int(const cJSON *it, int64_t *v) {
    if (!cJSON_IsNumber(it)) return false;
    double d = it->valuedouble;
    if (!isfinite(d) || floor(d) != d || fabs(d) >= 9007199254740992.0) return false;
    *v = (int64_t)d;
    return true;
}

ds_status ds_config_get_int(const ds_config *cfg, const char *key, int64_t def, int64_t *out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_get_int: out is NULL");
    const cJSON *it = dd_cfg_item(cfg, key);
    *out = def;
    if (!it) return DS_OK;
    if (!dd_json_int(it, out)) {
        *out = def;
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': expected an integer, got %s", cfg->label, key,
                       cJSON_IsNumber(it) ? "a non-integral number" : dd_json_type(it));
    }
    return DS_OK;
}

ds_status ds_config_get_float(const ds_config *cfg, const char *key, double def, double *out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_get_float: out is NULL");
    const cJSON *it = dd_cfg_item(cfg, key);
    *out = def;
    if (!it) return DS_OK;
    if (cJSON_IsString(it) && !strncmp(it->valuestring, DD_NONFINITE, strlen(DD_NONFINITE))) {
        const char *tok = it->valuestring + strlen(DD_NONFINITE);
        *out = !strcmp(tok, "NaN") ? NAN : (tok[0] == '-' ? -INFINITY : INFINITY);
        return DS_OK;
    }
    if (!cJSON_IsNumber(it))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': expected a number, got %s", cfg->label, key, dd_json_type(it));
    *out = it->valuedouble;
    return DS_OK;
}

ds_status ds_config_get_bool(const ds_config *cfg, const char *key, bool def, bool *out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_get_bool: out is NULL");
    const cJSON *it = dd_cfg_item(cfg, key);
    *out = def;
    if (!it) return DS_OK;
    if (!cJSON_IsBool(it))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': expected a boolean, got %s", cfg->label, key, dd_json_type(it));
    *out = cJSON_IsTrue(it);
    return DS_OK;
}

ds_status ds_config_get_string(const ds_config *cfg, const char *key, const char *def, const char **out,
                               ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_get_string: out is NULL");
    const cJSON *it = dd_cfg_item(cfg, key);
    *out = def;
    if (!it) return DS_OK;
    if (!cJSON_IsString(it) || !it->valuestring)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': expected a string, got %s", cfg->label, key, dd_json_type(it));
    *out = it->valuestring;
    return DS_OK;
}

ds_status ds_config_get_int_array(const ds_config *cfg, const char *key, int64_t *out, int cap, int *n, ds_err *err) {
    if (!n || (cap > 0 && !out)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_config_get_int_array: NULL argument");
    *n = 0;
    const cJSON *it = dd_cfg_item(cfg, key);
    if (!it) return DS_OK;
    if (!cJSON_IsArray(it))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': expected an array of integers, got %s", cfg->label, key,
                       dd_json_type(it));
    int k = 0;
    for (const cJSON *c = it->child; c; c = c->next, k++) {
        int64_t v;
        if (!dd_json_int(c, &v))
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': entry %d is not an integer", cfg->label, key, k);
        if (k >= cap)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: key '%s': more than %d entries", cfg->label, key, cap);
        out[k] = v;
    }
    *n = k;
    return DS_OK;
}

/* ---- weights ---------------------------------------------------------------------------------- */

typedef struct dd_entry {
    const char         *name;  /* the tensor's own name (owned by its shard) */
    int                 shard;
    const ds_st_tensor *t;
} dd_entry;

struct ds_weights {
    char            *label;    /* weight file or index file; "random weights (seed N)" */
    bool             random;   /* --random-weights: tensors are synthesized by ds_weights_read */
    uint64_t         seed;
    ds_st_tensor     fake;     /* what ds_weights_find answers in random mode */
    int              n_shards;
    ds_safetensors **shards;
    int64_t          n_entries; /* sharded only: entries sorted by name */
    dd_entry        *entries;
};

void ds_weights_close(ds_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_shards; i++) ds_safetensors_close(w->shards[i]);
    free(w->shards);
    free(w->entries);
    free(w->label);
    free(w);
}

const char *ds_weights_label(const ds_weights *w) { return w ? w->label : NULL; }
int ds_weights_shard_count(const ds_weights *w) { return w ? w->n_shards : 0; }

int64_t ds_weights_count(const ds_weights *w) {
    if (!w || w->random) return 0;
    return w->entries ? w->n_entries : ds_safetensors_count(w->shards[0]);
}

const ds_st_tensor *ds_weights_at(const ds_weights *w, int64_t i) {
    if (!w || w->random) return NULL;
    if (!w->entries) return ds_safetensors_at(w->shards[0], i);
    return (i >= 0 && i < w->n_entries) ? w->entries[i].t : NULL;
}

static int dd_cmp_entry(const void *a, const void *b) {
    return strcmp(((const dd_entry *)a)->name, ((const dd_entry *)b)->name);
}

static int dd_cmp_key_entry(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const dd_entry *)elem)->name);
}

static const dd_entry *dd_find_entry(const ds_weights *w, const char *name) {
    if (!w->n_entries) return NULL;
    return bsearch(name, w->entries, (size_t)w->n_entries, sizeof *w->entries, dd_cmp_key_entry);
}

const ds_st_tensor *ds_weights_find(const ds_weights *w, const char *name) {
    if (!w || !name) return NULL;
    if (w->random) return &w->fake;
    if (!w->entries) return ds_safetensors_find(w->shards[0], name);
    const dd_entry *e = dd_find_entry(w, name);
    return e ? e->t : NULL;
}

const ds_st_tensor *ds_weights_findf(const ds_weights *w, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof name) return NULL;
    return ds_weights_find(w, name);
}

/* Random mode: a seeded tensor of the expected shape. Element stream = FNV-1a(name) so every tensor is
 * independent of load order. Matrices and convolutions: N(0, 1/fan_in) (fan_in = product of all dims but
 * the first), so activations keep their scale through deep stacks; 1-D norm weights ("norm" in the name):
 * 1 + 0.02 N; other 1-D tensors (biases): 0.02 N. */
static ds_status dd_random_read(const ds_weights *w, const char *name, ds_dtype dtype, void *dst, size_t dst_bytes,
                                int expect_ndim, const int64_t *expect_shape, ds_err *err) {
    if (!expect_shape || expect_ndim < 1 || expect_ndim > DS_MAX_DIMS)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s': random weights need the expected shape", w->label,
                       name);
    int64_t n = 1, fan_in = 1;
    for (int i = 0; i < expect_ndim; i++) {
        if (expect_shape[i] < 0) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: negative dim for '%s'", w->label, name);
        n *= expect_shape[i];
        if (i) fan_in *= expect_shape[i];
    }
    if ((size_t)n * ds_dtype_size(dtype) > dst_bytes)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s' does not fit the destination", w->label, name);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    float *f = dtype == DS_F32 ? dst : malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!f) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory for '%s'", w->label, name);
    ds_rng_normal(w->seed ^ h, 0, f, n);
    bool is_norm = expect_ndim == 1 && strstr(name, "norm") != NULL;
    double scale = expect_ndim >= 2 ? 1.0 / sqrt((double)(fan_in > 0 ? fan_in : 1)) : 0.02;
    for (int64_t i = 0; i < n; i++) f[i] = (float)(f[i] * scale + (is_norm ? 1.0 : 0.0));
    if (f != dst) {
        ds_convert(dst, dtype, f, DS_F32, (size_t)n);
        free(f);
    }
    return DS_OK;
}

ds_status ds_weights_open_random(uint64_t seed, const char *label, ds_weights **out, ds_err *err) {
    *out = NULL;
    ds_weights *w = calloc(1, sizeof *w);
    char buf[512];
    snprintf(buf, sizeof buf, "%s: random weights (seed %llu)", label ? label : "model", (unsigned long long)seed);
    if (w) w->label = strdup(buf);
    if (!w || !w->label) {
        free(w);
        return DS_FAIL(err, DS_ERR_OOM, "random weights: out of memory");
    }
    w->random = true;
    w->seed = seed;
    w->fake.name = w->label;
    w->fake.dtype = DS_ST_F32;
    w->fake.data = w->label; /* non-NULL, nbytes 0: comparisons of two finds see equal empty tensors */
    *out = w;
    return DS_OK;
}

ds_status ds_weights_read(const ds_weights *w, const char *name, ds_dtype dtype, void *dst, size_t dst_bytes,
                          int expect_ndim, const int64_t *expect_shape, ds_err *err) {
    if (!w || !name) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_weights_read: NULL argument");
    if (w->random) return dd_random_read(w, name, dtype, dst, dst_bytes, expect_ndim, expect_shape, err);
    const ds_safetensors *st = w->shards[0];
    if (w->entries) {
        const dd_entry *e = dd_find_entry(w, name);
        if (!e) return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no tensor '%s'", w->label, name);
        st = w->shards[e->shard];
    } else if (!ds_safetensors_find(st, name)) {
        return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no tensor '%s'", w->label, name);
    }
    return ds_safetensors_read(st, name, dtype, dst, dst_bytes, expect_ndim, expect_shape, err);
}

static ds_status dd_weights_new(const char *label, int n_shards, ds_weights **out, ds_err *err) {
    ds_weights *w = calloc(1, sizeof *w);
    if (!w) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label);
    w->label = strdup(label);
    w->shards = calloc((size_t)(n_shards > 0 ? n_shards : 1), sizeof *w->shards);
    if (!w->label || !w->shards) {
        ds_weights_close(w);
        return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label);
    }
    *out = w;
    return DS_OK;
}

/* A shard name must be a plain file name inside the component directory. */
static bool dd_plain_name(const char *s) {
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Sharded weights from `index_path` (in `dir`). */
static ds_status dd_weights_open_index(const char *dir, const char *index_path, ds_weights **out, ds_err *err) {
    cJSON *root;
    DS_TRY(dd_open_json(index_path, &root, err));
    ds_status s = DS_OK;
    ds_weights *w = NULL;
    const char **files = NULL; /* distinct shard names (pointers into root) */
    int *shard_of = NULL;      /* weight_map entry -> index into files */
    int n_files = 0, n = 0, k = 0;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: \"weight_map\" is %s, not an object", index_path,
                    map ? dd_json_type(map) : "missing");
        goto done;
    }
    n = cJSON_GetArraySize(map);
    if (n == 0) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
        goto done;
    }
    files = calloc((size_t)n, sizeof *files);
    shard_of = calloc((size_t)n, sizeof *shard_of);
    if (!files || !shard_of) {
        s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", index_path);
        goto done;
    }
    for (const cJSON *it = map->child; it; it = it->next, k++) {
        if (!it->string || !cJSON_IsString(it) || !it->valuestring) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name string", index_path,
                        it->string ? it->string : "?");
            break;
        }
        if (!dd_plain_name(it->valuestring)) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: weight_map entry '%s': shard '%s' is not a plain file name",
                        index_path, it->string, it->valuestring);
            break;
        }
        int f = 0;
        while (f < n_files && strcmp(files[f], it->valuestring) != 0) f++;
        if (f == n_files) files[n_files++] = it->valuestring;
        shard_of[k] = f;
    }
    if (s == DS_OK) s = dd_weights_new(index_path, n_files, &w, err);
    if (s == DS_OK) {
        w->entries = calloc((size_t)n, sizeof *w->entries);
        if (!w->entries) s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", index_path);
    }
    /* Open every shard once. */
    for (int f = 0; s == DS_OK && f < n_files; f++) {
        char *p = dd_join(dir, files[f]);
        if (!p) {
            s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", index_path);
            break;
        }
        if (!dd_is_file(p)) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: shard '%s' listed in weight_map does not exist (%s)", index_path,
                        files[f], p);
        } else {
            s = ds_safetensors_open(p, &w->shards[f], err);
            if (s == DS_OK) w->n_shards = f + 1;
        }
        free(p);
    }
    /* Resolve every entry in its shard. */
    k = 0;
    for (const cJSON *it = map->child; s == DS_OK && it; it = it->next, k++) {
        const ds_st_tensor *t = ds_safetensors_find(w->shards[shard_of[k]], it->string);
        if (!t) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: weight_map names tensor '%s' in shard '%s', which does not contain it",
                        index_path, it->string, files[shard_of[k]]);
            break;
        }
        w->entries[k] = (dd_entry){.name = t->name, .shard = shard_of[k], .t = t};
    }
    if (s == DS_OK) {
        w->n_entries = n;
        qsort(w->entries, (size_t)n, sizeof *w->entries, dd_cmp_entry);
        for (int64_t i = 1; i < n; i++)
            if (strcmp(w->entries[i - 1].name, w->entries[i].name) == 0) {
                s = DS_FAIL(err, DS_ERR_FORMAT, "%s: weight_map lists tensor '%s' twice", index_path,
                            w->entries[i].name);
                break;
            }
    }
done:
    free(shard_of);
    free(files);
    cJSON_Delete(root);
    if (s != DS_OK) {
        ds_weights_close(w);
        return s;
    }
    *out = w;
    return DS_OK;
}

ds_status ds_weights_open(const char *dir, ds_weights **out, ds_err *err) {
    if (!dir || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_weights_open: NULL argument");
    *out = NULL;
    static const char *const singles[] = {"diffusion_pytorch_model.safetensors", "model.safetensors"};
    static const char *const indexes[] = {"diffusion_pytorch_model.safetensors.index.json",
                                          "model.safetensors.index.json"};
    static const char *const pickles[] = {"diffusion_pytorch_model.bin", "pytorch_model.bin",
                                          "diffusion_pytorch_model.bin.index.json", "pytorch_model.bin.index.json"};
    for (size_t i = 0; i < sizeof singles / sizeof *singles; i++) {
        char *p = dd_join(dir, singles[i]);
        if (!p) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", dir);
        if (dd_is_file(p)) {
            ds_weights *w = NULL;
            ds_status s = dd_weights_new(p, 1, &w, err);
            if (s == DS_OK) s = ds_safetensors_open(p, &w->shards[0], err);
            free(p);
            if (s != DS_OK) {
                ds_weights_close(w);
                return s;
            }
            w->n_shards = 1;
            *out = w;
            return DS_OK;
        }
        free(p);
    }
    for (size_t i = 0; i < sizeof indexes / sizeof *indexes; i++) {
        char *p = dd_join(dir, indexes[i]);
        if (!p) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", dir);
        if (dd_is_file(p)) {
            ds_status s = dd_weights_open_index(dir, p, out, err);
            free(p);
            return s;
        }
        free(p);
    }
    for (size_t i = 0; i < sizeof pickles / sizeof *pickles; i++) {
        char *p = dd_join(dir, pickles[i]);
        if (!p) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", dir);
        bool found = dd_is_file(p);
        free(p);
        if (found)
            return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                           "%s: weights are only in PyTorch pickle format (%s); ditserve reads safetensors only. "
                           "Convert with diffusers: load the model/pipeline with from_pretrained(...) and re-save it "
                           "with save_pretrained(path, safe_serialization=True)",
                           dir, pickles[i]);
    }
    return DS_FAIL(err, DS_ERR_NOT_FOUND,
                   "%s: no weights (expected diffusion_pytorch_model.safetensors, model.safetensors or a "
                   "*.safetensors.index.json)", dir);
}

/* ---- pipeline --------------------------------------------------------------------------------- */

typedef struct dd_comp_slot {
    const char   *name;    /* key in the model_index tree */
    const char   *library; /* its [library, class] strings (in the tree) */
    const char   *class_name;
    ds_component *loaded;  /* NULL until requested */
} dd_comp_slot;

struct ds_diffusers {
    char         *dir;
    bool          random_weights; /* components get seeded random weights instead of their files */
    uint64_t      random_seed;
    cJSON        *index;
    const char   *class_name;
    int           n_comps;
    dd_comp_slot *comps;
};

static void dd_component_free(ds_component *c) {
    if (!c) return;
    ds_config_close(c->config);
    ds_weights_close(c->weights);
    free((char *)c->path);
    free(c);
}

void ds_diffusers_set_random_weights(ds_diffusers *pipe, uint64_t seed) {
    pipe->random_weights = true;
    pipe->random_seed = seed;
}

void ds_diffusers_close(ds_diffusers *pipe) {
    if (!pipe) return;
    for (int i = 0; i < pipe->n_comps; i++) dd_component_free(pipe->comps[i].loaded);
    free(pipe->comps);
    cJSON_Delete(pipe->index);
    free(pipe->dir);
    free(pipe);
}

ds_status ds_diffusers_open(const char *dir, ds_diffusers **out, ds_err *err) {
    if (!dir || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_diffusers_open: NULL argument");
    *out = NULL;
    char *path = dd_join(dir, "model_index.json");
    if (!path) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", dir);
    ds_diffusers *pipe = calloc(1, sizeof *pipe);
    ds_status s = pipe ? DS_OK : DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    if (s == DS_OK && !(pipe->dir = strdup(dir))) s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    if (s == DS_OK) {
        s = dd_open_json(path, &pipe->index, err);
        if (s == DS_ERR_NOT_FOUND)
            s = DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no model_index.json (not a diffusers pipeline directory)", path);
    }
    if (s == DS_OK) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pipe->index, "_class_name");
        if (!cJSON_IsString(cls) || !cls->valuestring)
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: \"_class_name\" is %s, not a string", path,
                        cls ? dd_json_type(cls) : "missing");
        else
            pipe->class_name = cls->valuestring;
    }
    if (s == DS_OK) {
        int n = cJSON_GetArraySize(pipe->index);
        pipe->comps = calloc((size_t)(n > 0 ? n : 1), sizeof *pipe->comps);
        if (!pipe->comps) s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    }
    for (const cJSON *it = pipe && pipe->index ? pipe->index->child : NULL; s == DS_OK && it; it = it->next) {
        if (!it->string) continue;
        /* Duplicate keys are ambiguous (cJSON keeps both): reject them. */
        for (const cJSON *prev = pipe->index->child; prev != it; prev = prev->next)
            if (prev->string && strcmp(prev->string, it->string) == 0) {
                s = DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s' appears twice", path, it->string);
                break;
            }
        if (s != DS_OK) break;
        if (it->string[0] == '_') continue;
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2) continue; /* plain key (id2label, flags) */
        const cJSON *lib = it->child, *cls = it->child->next;
        bool lib_null = cJSON_IsNull(lib), cls_null = cJSON_IsNull(cls);
        bool lib_str = cJSON_IsString(lib), cls_str = cJSON_IsString(cls);
        if (lib_null && cls_null) continue; /* absent component */
        if (!(lib_str && cls_str)) {
            if (lib_null || cls_null || lib_str || cls_str) {
                s = DS_FAIL(err, DS_ERR_FORMAT, "%s: component '%s' must be [library, class] strings or [null, null]",
                            path, it->string);
                break;
            }
            continue; /* a 2-element array of something else: a plain key */
        }
        if (!dd_plain_name(it->string)) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: component name '%s' is not a plain directory name", path, it->string);
            break;
        }
        pipe->comps[pipe->n_comps++] =
            (dd_comp_slot){.name = it->string, .library = lib->valuestring, .class_name = cls->valuestring};
    }
    free(path);
    if (s != DS_OK) {
        ds_diffusers_close(pipe);
        return s;
    }
    *out = pipe;
    return DS_OK;
}

const char *ds_diffusers_class(const ds_diffusers *pipe) { return pipe ? pipe->class_name : NULL; }
const char *ds_diffusers_dir(const ds_diffusers *pipe) { return pipe ? pipe->dir : NULL; }
const cJSON *ds_diffusers_index(const ds_diffusers *pipe) { return pipe ? pipe->index : NULL; }
int ds_diffusers_component_count(const ds_diffusers *pipe) { return pipe ? pipe->n_comps : 0; }

const char *ds_diffusers_component_name(const ds_diffusers *pipe, int i) {
    if (!pipe || i < 0 || i >= pipe->n_comps) return NULL;
    return pipe->comps[i].name;
}

static dd_comp_slot *dd_slot(const ds_diffusers *pipe, const char *name) {
    if (!pipe || !name) return NULL;
    for (int i = 0; i < pipe->n_comps; i++)
        if (strcmp(pipe->comps[i].name, name) == 0) return &pipe->comps[i];
    return NULL;
}

bool ds_diffusers_has_component(const ds_diffusers *pipe, const char *name) { return dd_slot(pipe, name) != NULL; }

ds_status ds_diffusers_component(ds_diffusers *pipe, const char *name, const ds_component **out, ds_err *err) {
    if (!pipe || !name || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_diffusers_component: NULL argument");
    *out = NULL;
    dd_comp_slot *slot = dd_slot(pipe, name);
    if (!slot) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(pipe->index, name);
        if (it && cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsNull(it->child))
            return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s/model_index.json: component '%s' is absent ([null, null])",
                           pipe->dir, name);
        return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s/model_index.json: no component '%s'", pipe->dir, name);
    }
    if (slot->loaded) {
        *out = slot->loaded;
        return DS_OK;
    }
    ds_component *c = calloc(1, sizeof *c);
    if (!c) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", pipe->dir);
    c->name = slot->name;
    c->library = slot->library;
    c->class_name = slot->class_name;
    char *cpath = dd_join(pipe->dir, name);
    c->path = cpath;
    ds_status s = cpath ? DS_OK : DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", pipe->dir);
    if (s == DS_OK && !dd_is_dir(cpath))
        s = DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: component directory of '%s' (%s) is missing", cpath, name,
                    c->class_name);
    bool is_model = false;
    if (s == DS_OK) {
        static const char *const cfgs[] = {"config.json", "scheduler_config.json"};
        for (size_t i = 0; s == DS_OK && i < sizeof cfgs / sizeof *cfgs && !c->config; i++) {
            char *p = dd_join(cpath, cfgs[i]);
            if (!p) {
                s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", cpath);
                break;
            }
            if (dd_is_file(p)) {
                s = ds_config_open(p, &c->config, err);
                is_model = i == 0;
            }
            free(p);
        }
    }
    if (s == DS_OK && pipe->random_weights && is_model) {
        s = ds_weights_open_random(pipe->random_seed, cpath, &c->weights, err);
    } else if (s == DS_OK) {
        s = ds_weights_open(cpath, &c->weights, err);
        if (s == DS_ERR_NOT_FOUND && !is_model) s = DS_OK; /* scheduler, tokenizer: no weights */
    }
    if (s != DS_OK) {
        dd_component_free(c);
        return s;
    }
    slot->loaded = c;
    *out = c;
    return DS_OK;
}
