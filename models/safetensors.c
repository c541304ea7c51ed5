/* safetensors.c - the validating .safetensors reader declared in safetensors.h.
 *
 * Open maps the file read-only (MAP_PRIVATE) after a size check, then everything goes through
 * st_parse_image: header length (u64 LE) against the image size, a NUL-terminated copy of the
 * header parsed with a length-bounded cJSON parse, per-entry validation (dtype, shape, offsets,
 * overflow-checked byte size), duplicate detection, and a check that the ranges tile the data
 * buffer exactly. Names and metadata strings live in one allocation; lookups bsearch an array of
 * tensor pointers sorted by name. */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct ds_safetensors {
    char               *label;    /* owned copy */
    void               *map;      /* mmap base when opened from a file, else NULL */
    size_t              map_len;
    const uint8_t      *data;     /* start of the data buffer (after the header) */
    size_t              data_len;
    int64_t             count;
    ds_st_tensor       *tensors;  /* sorted by data offset */
    const ds_st_tensor **by_name; /* sorted by name (strcmp) */
    int64_t             n_meta;
    const char        **meta_keys;
    const char        **meta_vals;
    char               *strings;  /* all names and metadata strings, one allocation */
};

static const char *const st_dtype_names[DS_ST_DTYPE_COUNT] = {
    [DS_ST_F64] = "F64",   [DS_ST_F32] = "F32",   [DS_ST_F16] = "F16",   [DS_ST_BF16] = "BF16",
    [DS_ST_I64] = "I64",   [DS_ST_I32] = "I32",   [DS_ST_I16] = "I16",   [DS_ST_I8] = "I8",
    [DS_ST_U64] = "U64",   [DS_ST_U32] = "U32",   [DS_ST_U16] = "U16",   [DS_ST_U8] = "U8",
    [DS_ST_BOOL] = "BOOL", [DS_ST_F8_E4M3] = "F8_E4M3", [DS_ST_F8_E5M2] = "F8_E5M2",
};

static const size_t st_dtype_sizes[DS_ST_DTYPE_COUNT] = {
    [DS_ST_F64] = 8, [DS_ST_F32] = 4, [DS_ST_F16] = 2, [DS_ST_BF16] = 2,
    [DS_ST_I64] = 8, [DS_ST_I32] = 4, [DS_ST_I16] = 2, [DS_ST_I8] = 1,
    [DS_ST_U64] = 8, [DS_ST_U32] = 4, [DS_ST_U16] = 2, [DS_ST_U8] = 1,
    [DS_ST_BOOL] = 1, [DS_ST_F8_E4M3] = 1, [DS_ST_F8_E5M2] = 1,
};

const char *ds_st_dtype_name(ds_st_dtype t) {
    if ((int)t < 0 || t >= DS_ST_DTYPE_COUNT) return "?";
    return st_dtype_names[t];
}

size_t ds_st_dtype_size(ds_st_dtype t) {
    if ((int)t < 0 || t >= DS_ST_DTYPE_COUNT) return 0;
    return st_dtype_sizes[t];
}

void ds_safetensors_close(ds_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    free(st->label);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->strings);
    free(st);
}

/* A JSON number that is a non-negative integer exactly representable as a double (< 2^53). */
static int st_json_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return 0;
    double v = it->valuedouble;
    if (!isfinite(v) || v < 0.0 || v >= 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* Per-tensor bookkeeping during validation. */
typedef struct st_entry {
    const char *json_name; /* inside the cJSON tree */
    ds_st_dtype dtype;
    int         ndim;
    int64_t     shape[DS_MAX_DIMS];
    uint64_t    begin, end;
    int64_t     order;     /* index in the header, for a stable sort */
} st_entry;

static int st_cmp_offsets(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

static int st_cmp_entry_name(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    int c = strcmp(x->json_name, y->json_name);
    if (c) return c;
    return x->order < y->order ? -1 : (x->order > y->order);
}

static int st_cmp_tensor_ptr_name(const void *a, const void *b) {
    const ds_st_tensor *x = *(const ds_st_tensor *const *)a, *y = *(const ds_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int st_cmp_key_tensor(const void *key, const void *elem) {
    const ds_st_tensor *t = *(const ds_st_tensor *const *)elem;
    return strcmp((const char *)key, t->name);
}

static int st_cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Validate one tensor entry `it` (named it->string) into *e. */
static ds_status st_parse_entry(const char *label, const cJSON *it, st_entry *e, ds_err *err) {
    const char *name = it->string;
    if (!cJSON_IsObject(it)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': entry is not an object", label, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!jd) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", label, name);
    if (!js) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", label, name);
    if (!jo) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", label, name);
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", label, name);
    int dt = -1;
    for (int k = 0; k < DS_ST_DTYPE_COUNT; k++)
        if (strcmp(jd->valuestring, st_dtype_names[k]) == 0) dt = k;
    if (dt < 0) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%.40s\"", label, name, jd->valuestring);
    e->dtype = (ds_st_dtype)dt;

    if (!cJSON_IsArray(js)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", label, name);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > DS_MAX_DIMS)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims, more than the supported %d", label, name, ndim,
                       DS_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    int overflow = 0;
    int d = 0;
    for (const cJSON *c = js->child; c; c = c->next, d++) {
        uint64_t v;
        if (!st_json_uint(c, &v))
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", label, name, d);
        e->shape[d] = (int64_t)v;
        if (__builtin_mul_overflow(numel, v, &numel)) overflow = 1;
    }
    uint64_t nbytes = 0;
    if (!overflow && __builtin_mul_overflow(numel, (uint64_t)st_dtype_sizes[dt], &nbytes)) overflow = 1;
    /* A zero dim makes the product 0 even if other dims overflowed. */
    for (int k = 0; k < ndim; k++)
        if (e->shape[k] == 0) { overflow = 0; nbytes = 0; }
    if (overflow) return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': shape product overflows", label, name);

    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not a [begin, end] array", label, name);
    if (!st_json_uint(jo->child, &e->begin) || !st_json_uint(jo->child->next, &e->end))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", label, name);
    if (e->begin > e->end)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] have begin > end", label, name,
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes)
        return DS_FAIL(err, DS_ERR_FORMAT,
                       "%s: tensor '%s': size mismatch: %s shape needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                       label, name, st_dtype_names[dt], (unsigned long long)nbytes, (unsigned long long)e->begin,
                       (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    e->json_name = name;
    return DS_OK;
}

/* Validate the cJSON tree `root` against the data buffer and fill st. */
static ds_status st_build(ds_safetensors *st, const cJSON *root, ds_err *err) {
    const char *label = st->label;
    if (!cJSON_IsObject(root)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: header is not a JSON object", label);

    /* Pass 1: count entries and string bytes; validate metadata. */
    const cJSON *meta = NULL;
    int64_t n = 0, n_meta = 0;
    size_t str_bytes = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string) return DS_FAIL(err, DS_ERR_FORMAT, "%s: header entry without a name", label);
        if (strcmp(it->string, "__metadata__") == 0) {
            if (meta) return DS_FAIL(err, DS_ERR_FORMAT, "%s: duplicate \"__metadata__\"", label);
            meta = it;
            if (!cJSON_IsObject(it)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: \"__metadata__\" is not an object", label);
            for (const cJSON *m = it->child; m; m = m->next) {
                if (!m->string || !cJSON_IsString(m) || !m->valuestring)
                    return DS_FAIL(err, DS_ERR_FORMAT, "%s: \"__metadata__\" entry '%s' is not a string", label,
                                   m->string ? m->string : "?");
                str_bytes += strlen(m->string) + 1 + strlen(m->valuestring) + 1;
                n_meta++;
            }
            continue;
        }
        str_bytes += strlen(it->string) + 1;
        n++;
    }

    st_entry *ents = n ? calloc((size_t)n, sizeof *ents) : NULL;
    if (n && !ents) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory for %lld tensor entries", label, (long long)n);
    ds_status s = DS_OK;
    int64_t i = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (it == meta) continue;
        s = st_parse_entry(label, it, &ents[i], err);
        if (s != DS_OK) goto fail;
        ents[i].order = i;
        i++;
    }

    /* Duplicate names (cJSON keeps them as separate items): sort by name, compare neighbours. */
    if (n) qsort(ents, (size_t)n, sizeof *ents, st_cmp_entry_name);
    for (i = 1; i < n; i++)
        if (strcmp(ents[i - 1].json_name, ents[i].json_name) == 0) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: duplicate tensor name '%s'", label, ents[i].json_name);
            goto fail;
        }

    /* Tiling: sort by offsets; each range must start where the previous one ended. */
    if (n) qsort(ents, (size_t)n, sizeof *ents, st_cmp_offsets);
    uint64_t pos = 0;
    for (i = 0; i < n; i++) {
        if (ents[i].begin < pos) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                        label, ents[i].json_name, (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end,
                        ents[i - 1].json_name, (unsigned long long)ents[i - 1].begin, (unsigned long long)ents[i - 1].end);
            goto fail;
        }
        if (ents[i].begin > pos) {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': hole in the data buffer: bytes [%llu, %llu) belong to no tensor",
                        label, ents[i].json_name, (unsigned long long)pos, (unsigned long long)ents[i].begin);
            goto fail;
        }
        pos = ents[i].end;
    }
    if (pos != st->data_len) {
        if (pos > st->data_len)
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu is past the end of the %zu-byte data "
                        "buffer (truncated file?)", label, ents[n - 1].json_name, (unsigned long long)pos, st->data_len);
        else
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: tensors cover %llu bytes but the data buffer has %zu (trailing bytes)",
                        label, (unsigned long long)pos, st->data_len);
        goto fail;
    }

    /* Fill the handle: one string block, tensors in offset order, a by-name index. */
    st->strings = malloc(str_bytes ? str_bytes : 1);
    st->tensors = n ? calloc((size_t)n, sizeof *st->tensors) : NULL;
    st->by_name = n ? calloc((size_t)n, sizeof *st->by_name) : NULL;
    st->meta_keys = n_meta ? calloc((size_t)n_meta, sizeof *st->meta_keys) : NULL;
    st->meta_vals = n_meta ? calloc((size_t)n_meta, sizeof *st->meta_vals) : NULL;
    if (!st->strings || (n && (!st->tensors || !st->by_name)) || (n_meta && (!st->meta_keys || !st->meta_vals))) {
        s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory for the tensor index", label);
        goto fail;
    }
    char *sp = st->strings;
    for (i = 0; i < n; i++) {
        ds_st_tensor *t = &st->tensors[i];
        size_t l = strlen(ents[i].json_name) + 1;
        memcpy(sp, ents[i].json_name, l);
        t->name = sp;
        sp += l;
        t->dtype = ents[i].dtype;
        t->ndim = ents[i].ndim;
        memcpy(t->shape, ents[i].shape, sizeof t->shape);
        t->data = st->data + ents[i].begin;
        t->nbytes = (size_t)(ents[i].end - ents[i].begin);
        st->by_name[i] = t;
    }
    st->count = n;
    if (meta) {
        int64_t k = 0;
        for (const cJSON *m = meta->child; m; m = m->next, k++) {
            size_t l = strlen(m->string) + 1;
            memcpy(sp, m->string, l);
            st->meta_keys[k] = sp;
            sp += l;
            l = strlen(m->valuestring) + 1;
            memcpy(sp, m->valuestring, l);
            st->meta_vals[k] = sp;
            sp += l;
        }
        st->n_meta = n_meta;
    }
    if (n_meta > 1) {
        /* Duplicate metadata keys are as ambiguous as duplicate tensor names. */
        int64_t k;
        const char **keys = malloc((size_t)n_meta * sizeof *keys + 1);
        if (!keys) { s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label); goto fail; }
        memcpy(keys, st->meta_keys, (size_t)n_meta * sizeof *keys);
        qsort(keys, (size_t)n_meta, sizeof *keys, st_cmp_str_ptr);
        for (k = 1; k < n_meta; k++)
            if (strcmp(keys[k - 1], keys[k]) == 0) {
                s = DS_FAIL(err, DS_ERR_FORMAT, "%s: duplicate \"__metadata__\" key '%s'", label, keys[k]);
                free(keys);
                goto fail;
            }
        free(keys);
    }
    if (n) qsort(st->by_name, (size_t)n, sizeof *st->by_name, st_cmp_tensor_ptr_name);
    free(ents);
    return DS_OK;
fail:
    free(ents);
    return s;
}

/* Validate image buf[0..len) into a fresh handle that takes ownership of `map` (may be NULL). */
static ds_status st_parse_image(const uint8_t *buf, size_t len, const char *label, void *map, size_t map_len,
                                ds_safetensors **out, ds_err *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    ds_safetensors *st = calloc(1, sizeof *st);
    char *lab = st ? strdup(label) : NULL;
    if (!st || !lab) {
        free(st);
        free(lab);
        if (map) munmap(map, map_len);
        return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", label);
    }
    st->label = lab;
    st->map = map;
    st->map_len = map_len;
    label = st->label;

    ds_status s;
    if (len < 8) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", label, len);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | buf[k];
    if (hlen == 0) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: header length is 0", label);
        goto fail;
    }
    if (hlen > DS_ST_MAX_HEADER) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", label,
                    (unsigned long long)hlen, DS_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > len - 8) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: header length %llu is larger than the file (%zu bytes after the length)",
                    label, (unsigned long long)hlen, len - 8);
        goto fail;
    }
    const char *hdr = (const char *)buf + 8;
    if (memchr(hdr, 0, (size_t)hlen)) {
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: header contains a NUL byte", label);
        goto fail;
    }
    char *copy = malloc((size_t)hlen + 1);
    if (!copy) {
        s = DS_FAIL(err, DS_ERR_OOM, "%s: out of memory for a %llu-byte header", label, (unsigned long long)hlen);
        goto fail;
    }
    memcpy(copy, hdr, (size_t)hlen);
    copy[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = (end && end >= copy && end <= copy + hlen) ? (size_t)(end - copy) : 0;
        s = DS_FAIL(err, DS_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %llu)", label, at,
                    (unsigned long long)hlen);
        free(copy);
        goto fail;
    }
    /* Only whitespace (the writer pads with spaces) may follow the JSON value. */
    for (const char *p = end; p && p < copy + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = DS_FAIL(err, DS_ERR_FORMAT, "%s: trailing garbage after the header JSON at byte %zu", label,
                        (size_t)(p - copy));
            cJSON_Delete(root);
            free(copy);
            goto fail;
        }
    st->data = buf + 8 + hlen;
    st->data_len = len - 8 - (size_t)hlen;
    s = st_build(st, root, err);
    cJSON_Delete(root);
    free(copy);
    if (s != DS_OK) goto fail;
    *out = st;
    return DS_OK;
fail:
    ds_safetensors_close(st);
    return s;
}

ds_status ds_safetensors_parse(const void *buf, size_t len, const char *label, ds_safetensors **out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_safetensors_parse: out is NULL");
    *out = NULL;
    if (!buf && len) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_safetensors_parse: buf is NULL");
    return st_parse_image(buf, len, label, NULL, 0, out, err);
}

ds_status ds_safetensors_open(const char *path, ds_safetensors **out, ds_err *err) {
    if (!out || !path) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_safetensors_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return DS_FAIL(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return DS_FAIL(err, DS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return DS_FAIL(err, DS_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: file is %lld bytes, too short for the 8-byte header length", path,
                       (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return DS_FAIL(err, DS_ERR_IO, "%s: file too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return DS_FAIL(err, DS_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, len, strerror(e));
    return st_parse_image(map, len, path, map, len, out, err);
}

int64_t ds_safetensors_count(const ds_safetensors *st) { return st ? st->count : 0; }

const ds_st_tensor *ds_safetensors_at(const ds_safetensors *st, int64_t i) {
    if (!st || i < 0 || i >= st->count) return NULL;
    return &st->tensors[i];
}

const ds_st_tensor *ds_safetensors_find(const ds_safetensors *st, const char *name) {
    if (!st || !name || st->count == 0) return NULL;
    const ds_st_tensor *const *hit =
        bsearch(name, st->by_name, (size_t)st->count, sizeof *st->by_name, st_cmp_key_tensor);
    return hit ? *hit : NULL;
}

const char *ds_safetensors_metadata(const ds_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}

const char *ds_safetensors_label(const ds_safetensors *st) { return st ? st->label : NULL; }

ds_status ds_safetensors_read(const ds_safetensors *st, const char *name, ds_dtype dtype, void *dst, size_t dst_bytes,
                              int expect_ndim, const int64_t *expect_shape, ds_err *err) {
    if (!st || !name) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_safetensors_read: NULL argument");
    const char *label = st->label;
    const ds_st_tensor *t = ds_safetensors_find(st, name);
    if (!t) return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no tensor '%s'", label, name);
    ds_dtype src;
    switch (t->dtype) {
    case DS_ST_F32: src = DS_F32; break;
    case DS_ST_F16: src = DS_F16; break;
    case DS_ST_BF16: src = DS_BF16; break;
    default:
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as a float tensor", label, name,
                       ds_st_dtype_name(t->dtype));
    }
    if ((int)dtype < 0 || dtype >= DS_DTYPE_COUNT)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s': invalid destination dtype %d", label, name, (int)dtype);
    if (expect_shape) {
        int same = expect_ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = expect_shape[d] == t->shape[d];
        if (!same) {
            char got[128], want[128];
            int gp = 0, wp = 0;
            gp += snprintf(got + gp, sizeof got - (size_t)gp, "[");
            for (int d = 0; d < t->ndim && gp < (int)sizeof got - 24; d++)
                gp += snprintf(got + gp, sizeof got - (size_t)gp, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            snprintf(got + gp, sizeof got - (size_t)gp, "]");
            wp += snprintf(want + wp, sizeof want - (size_t)wp, "[");
            for (int d = 0; d < expect_ndim && d < DS_MAX_DIMS && wp < (int)sizeof want - 24; d++)
                wp += snprintf(want + wp, sizeof want - (size_t)wp, "%s%lld", d ? ", " : "", (long long)expect_shape[d]);
            snprintf(want + wp, sizeof want - (size_t)wp, "%s]", expect_ndim > DS_MAX_DIMS ? ", ..." : "");
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s': shape %s, expected %s", label, name, got, want);
        }
    }
    size_t numel = t->nbytes / ds_dtype_size(src);
    size_t need = numel * ds_dtype_size(dtype); /* <= 2 * nbytes, which fits: it is a mapped range */
    if (need > dst_bytes || (need && !dst))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s': needs %zu bytes as %s, destination holds %zu", label,
                       name, need, ds_dtype_name(dtype), dst ? dst_bytes : (size_t)0);
    if (numel) ds_convert(dst, dtype, t->data, src, numel);
    return DS_OK;
}
