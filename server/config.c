/* config.c - flags + DITSERVE_* variables -> ds_server_config (see config.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_NUM, T_LIST } opt_type;

typedef struct opt {
    const char *flag, *env, *help, *def;
    opt_type    type;
} opt;

static const opt k_opts[] = {
    {"--model", "DITSERVE_MODEL", "NAME=DIR: a diffusers directory to serve as NAME (repeatable)", "the demo model", T_LIST},
    {"--device", "DITSERVE_DEVICE", "auto (a GPU when one is usable, else the CPU) | cpu | cuda | cuda:N", "auto", T_STR},
    {"--dtype", "DITSERVE_DTYPE", "GPU compute dtype: bf16 | f16 | f32 (the CPU computes in f32)", "bf16 on a GPU", T_STR},
    {"--cuda-graphs", "DITSERVE_CUDA_GRAPHS", "on | off: replay each kind of denoising step as a CUDA graph", "on", T_STR},
    {"--attention", "DITSERVE_ATTENTION", "fast (bf16/f16 tensor cores) | exact (fp32 inside, slower)", "fast", T_STR},
    {"--host", "DITSERVE_HOST", "address to listen on", "127.0.0.1", T_STR},
    {"--port", "DITSERVE_PORT", "TCP port (0: any free port)", "8080", T_INT},
    {"--api-key", "DITSERVE_API_KEY", "require Authorization: Bearer KEY (all routes but /health)", "none", T_STR},
    {"--queue-size", "DITSERVE_QUEUE_SIZE", "jobs waiting per device before 429", "16", T_INT},
    {"--job-ttl", "DITSERVE_JOB_TTL", "seconds a finished job (and its images) is kept", "600", T_NUM},
    {"--max-body-mb", "DITSERVE_MAX_BODY_MB", "largest request body in MiB (413 above)", "16", T_INT},
    {"--max-steps", "DITSERVE_MAX_STEPS", "largest steps a request may ask for", "200", T_INT},
    {"--max-pixels", "DITSERVE_MAX_PIXELS", "largest width x height", "1048576", T_INT},
    {"--max-images", "DITSERVE_MAX_IMAGES", "most images per request (labels x num_images)", "4", T_INT},
    {"--max-retained-mb", "DITSERVE_MAX_RETAINED_MB", "memory bound over finished jobs' results", "256", T_INT},
    {"--default-cache", "DITSERVE_DEFAULT_CACHE", "NAME=CONFIG: cache config for requests without one (repeatable)", "none", T_LIST},
    {"--cors-origin", "DITSERVE_CORS_ORIGIN", "allowed browser Origin, or * (repeatable)", "none", T_LIST},
    {"--on-shutdown", "DITSERVE_ON_SHUTDOWN", "finish | cancel: what SIGTERM does to queued and running jobs", "finish", T_STR},
    {"--max-connections", "DITSERVE_MAX_CONNECTIONS", "concurrent HTTP connections", "256", T_INT},
};
#define N_OPTS ((int)(sizeof k_opts / sizeof k_opts[0]))

void ds_server_config_usage(FILE *f) {
    fprintf(f, "usage: ditserve [--model NAME=DIR]... [options]     start the HTTP server\n"
               "       ditserve generate ...                       one-off generation (ditserve generate --help)\n"
               "       ditserve info | --version | --help\n\n"
               "server options (each also read from its environment variable; a flag wins):\n");
    for (int i = 0; i < N_OPTS; i++)
        fprintf(f, "  %-18s %-26s %s [%s]\n", k_opts[i].flag, k_opts[i].env, k_opts[i].help, k_opts[i].def);
    fprintf(f, "\nWith no --model the demo model is served as \"demo\" (from $DITSERVE_DEMO_DIR or assets/demo).\n"
               "Repeatable options take comma-separated lists in their variables.\n");
}

static int fail(char *msg, size_t cap, const char *fmt, const char *a, const char *b) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, fmt, a, b);
    snprintf(msg, cap, "%s", tmp);
    return 2;
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out, char *msg, size_t cap) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in %ld..%ld", lo, hi);
        char m2[300];
        snprintf(m2, sizeof m2, "%s expects %s, got '%.100s'", flag, range, v);
        snprintf(msg, cap, "%s", m2);
        return 2;
    }
    *out = x;
    return 0;
}

/* Split NAME=VALUE. */
static int split_eq(const char *flag, const char *v, char *name, size_t ncap, char *val, size_t vcap, char *msg, size_t cap) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1]) return fail(msg, cap, "%s expects NAME=VALUE, got '%.200s'", flag, v);
    if ((size_t)(eq - v) >= ncap) return fail(msg, cap, "%s: name too long in '%.200s'", flag, v);
    if (strlen(eq + 1) >= vcap) return fail(msg, cap, "%s: value too long in '%.200s'", flag, v);
    snprintf(name, ncap, "%.*s", (int)(eq - v), v);
    snprintf(val, vcap, "%s", eq + 1);
    return 0;
}

static int apply(ds_server_config *c, int idx, const char *v, char *msg, size_t cap) {
    const char *f = k_opts[idx].flag;
    long x = 0;
    int rc = 0;
    if (!strcmp(f, "--model")) {
        if (c->n_models >= DS_CFG_MAX_MODELS) return fail(msg, cap, "%s: at most 16 models%s", f, "");
        rc = split_eq(f, v, c->models[c->n_models].name, sizeof c->models[0].name, c->models[c->n_models].dir,
                      sizeof c->models[0].dir, msg, cap);
        if (!rc) c->n_models++;
    } else if (!strcmp(f, "--default-cache")) {
        if (c->n_default_cache >= DS_CFG_MAX_MODELS) return fail(msg, cap, "%s: at most 16%s", f, "");
        rc = split_eq(f, v, c->default_cache[c->n_default_cache].model, sizeof c->default_cache[0].model,
                      c->default_cache[c->n_default_cache].config, sizeof c->default_cache[0].config, msg, cap);
        if (!rc) c->n_default_cache++;
    } else if (!strcmp(f, "--cors-origin")) {
        if (c->n_cors >= DS_CFG_MAX_CORS) return fail(msg, cap, "%s: at most 8 origins%s", f, "");
        if (strlen(v) >= sizeof c->cors[0] || !v[0]) return fail(msg, cap, "%s: bad origin '%.200s'", f, v);
        snprintf(c->cors[c->n_cors++], sizeof c->cors[0], "%s", v);
    } else if (!strcmp(f, "--device")) {
        if (strlen(v) >= sizeof c->device) return fail(msg, cap, "%s: '%.100s' is too long", f, v);
        snprintf(c->device, sizeof c->device, "%s", v);
    } else if (!strcmp(f, "--dtype")) {
        if (strcmp(v, "bf16") && strcmp(v, "f16") && strcmp(v, "f32"))
            return fail(msg, cap, "%s must be bf16, f16 or f32, got '%.100s'", f, v);
        snprintf(c->dtype, sizeof c->dtype, "%s", v);
    } else if (!strcmp(f, "--cuda-graphs")) {
        if (strcmp(v, "on") && strcmp(v, "off")) return fail(msg, cap, "%s must be on or off, got '%.100s'", f, v);
        c->cuda_graphs_off = !strcmp(v, "off");
    } else if (!strcmp(f, "--attention")) {
        if (strcmp(v, "fast") && strcmp(v, "exact"))
            return fail(msg, cap, "%s must be fast or exact, got '%.100s'", f, v);
        c->attention_exact = !strcmp(v, "exact");
    } else if (!strcmp(f, "--host")) {
        if (strlen(v) >= sizeof c->host || !v[0]) return fail(msg, cap, "%s: bad host '%.100s'", f, v);
        snprintf(c->host, sizeof c->host, "%s", v);
    } else if (!strcmp(f, "--api-key")) {
        if (strlen(v) >= sizeof c->api_key) return fail(msg, cap, "%s: longer than 255 characters%s", f, "");
        snprintf(c->api_key, sizeof c->api_key, "%s", v);
    } else if (!strcmp(f, "--on-shutdown")) {
        if (strcmp(v, "finish") && strcmp(v, "cancel")) return fail(msg, cap, "%s must be finish or cancel, got '%.100s'", f, v);
        c->shutdown_cancel = !strcmp(v, "cancel");
    } else if (!strcmp(f, "--port")) {
        if (!(rc = parse_long(f, v, 0, 65535, &x, msg, cap))) c->port = (int)x;
    } else if (!strcmp(f, "--queue-size")) {
        if (!(rc = parse_long(f, v, 1, 100000, &x, msg, cap))) c->queue_size = (int)x;
    } else if (!strcmp(f, "--job-ttl")) {
        if (!(rc = parse_long(f, v, 1, 30L * 86400, &x, msg, cap))) c->job_ttl_s = (double)x;
    } else if (!strcmp(f, "--max-body-mb")) {
        if (!(rc = parse_long(f, v, 1, 4096, &x, msg, cap))) c->max_body_mb = (int)x;
    } else if (!strcmp(f, "--max-steps")) {
        if (!(rc = parse_long(f, v, 1, 1000, &x, msg, cap))) c->max_steps = (int)x;
    } else if (!strcmp(f, "--max-pixels")) {
        if (!(rc = parse_long(f, v, 64, 268435456L, &x, msg, cap))) c->max_pixels = x;
    } else if (!strcmp(f, "--max-images")) {
        if (!(rc = parse_long(f, v, 1, 64, &x, msg, cap))) c->max_images = (int)x;
    } else if (!strcmp(f, "--max-retained-mb")) {
        if (!(rc = parse_long(f, v, 1, 1048576, &x, msg, cap))) c->max_retained_mb = (int)x;
    } else if (!strcmp(f, "--max-connections")) {
        if (!(rc = parse_long(f, v, 4, 10000, &x, msg, cap))) c->max_connections = (int)x;
    }
    return rc;
}

static int find_opt(const char *flag, size_t n) {
    for (int i = 0; i < N_OPTS; i++)
        if (strlen(k_opts[i].flag) == n && !strncmp(k_opts[i].flag, flag, n)) return i;
    return -1;
}

int ds_server_config_parse(int argc, char **argv, ds_server_config *c, char *msg, size_t cap, FILE *out) {
    memset(c, 0, sizeof *c);
    snprintf(c->device, sizeof c->device, "auto");
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->queue_size = 16;
    c->job_ttl_s = 600;
    c->max_body_mb = 16;
    c->max_steps = 200;
    c->max_pixels = 1048576;
    c->max_images = 4;
    c->max_retained_mb = 256;
    c->max_connections = 256;
    /* flags first, remembering which options they set, then variables for the rest */
    bool set[N_OPTS] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ds_server_config_usage(out);
            return 1;
        }
        if (strncmp(a, "--", 2)) return fail(msg, cap, "unexpected argument '%.200s' (see ditserve --help)%s", a, "");
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        int idx = find_opt(a, n);
        if (idx < 0) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(n < 100 ? n : 100), a);
            return fail(msg, cap, "unknown option '%s' (see ditserve --help)%s", name, "");
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) return fail(msg, cap, "%s needs a value%s", k_opts[idx].flag, "");
            v = argv[++i];
        }
        set[idx] = true;
        int rc = apply(c, idx, v, msg, cap);
        if (rc) return rc;
    }
    for (int idx = 0; idx < N_OPTS; idx++) {
        if (set[idx]) continue;
        const char *v = getenv(k_opts[idx].env);
        if (!v || !v[0]) continue;
        if (k_opts[idx].type == T_LIST) {
            char buf[4096];
            snprintf(buf, sizeof buf, "%s", v);
            char *save = NULL;
            for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int rc = apply(c, idx, tok, msg, cap);
                if (rc) return rc;
            }
        } else {
            int rc = apply(c, idx, v, msg, cap);
            if (rc) {
                char m2[600];
                snprintf(m2, sizeof m2, "%s (from %s)", msg, k_opts[idx].env);
                snprintf(msg, cap, "%s", m2);
                return rc;
            }
        }
    }
    c->demo = c->n_models == 0;
    for (int i = 0; i < c->n_default_cache; i++) {
        bool found = c->demo && !strcmp(c->default_cache[i].model, "demo");
        for (int k = 0; k < c->n_models; k++) found |= !strcmp(c->models[k].name, c->default_cache[i].model);
        if (!found) return fail(msg, cap, "--default-cache %s: no model called '%s'", c->default_cache[i].model, c->default_cache[i].model);
    }
    return 0;
}

static bool is_model_dir(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    return access(p, R_OK) == 0;
}

bool ds_server_config_find_demo(const char *exe, char *buf, size_t cap, char *msg, size_t msg_cap) {
    const char *env = getenv("DITSERVE_DEMO_DIR");
    if (env && env[0]) {
        if (is_model_dir(env)) {
            snprintf(buf, cap, "%s", env);
            return true;
        }
        snprintf(msg, msg_cap, "DITSERVE_DEMO_DIR=%s has no model_index.json", env);
        return false;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    else snprintf(self, sizeof self, "%s", exe ? exe : ".");
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    else snprintf(self, sizeof self, ".");
    char a[PATH_MAX + 32], b[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/../../assets/demo", self);
    snprintf(b, sizeof b, "%s/../share/ditserve/demo", self);
    if (is_model_dir(a)) {
        snprintf(buf, cap, "%s", a);
        return true;
    }
    if (is_model_dir(b)) {
        snprintf(buf, cap, "%s", b);
        return true;
    }
#ifdef DS_SOURCE_DEMO_DIR
    if (is_model_dir(DS_SOURCE_DEMO_DIR)) { /* a build directory outside the source tree */
        snprintf(buf, cap, "%s", DS_SOURCE_DEMO_DIR);
        return true;
    }
#endif
    snprintf(msg, msg_cap,
             "no --model given and no demo model found: looked for model_index.json in $DITSERVE_DEMO_DIR (unset), "
             "%s and %s; pass --model NAME=DIR",
             a, b);
    return false;
}
