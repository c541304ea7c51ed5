/* main.c - the `ditserve` binary: command-line entry point and process lifecycle. The only place that may
 * exit(). Subcommands: `ditserve --version`, `ditserve info`, `ditserve generate` (server/cli_generate.c);
 * anything else (including no arguments) starts the HTTP server: configuration (server/config.c) -> engine
 * (models load and warm up in the worker; /health says 503 meanwhile) -> HTTP (server/http.c) -> wait for
 * SIGTERM/SIGINT -> stop accepting, finish or cancel the jobs (--on-shutdown), stop HTTP, exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "engine.h"
#include "engine_info.h"
#include "log.h"
#ifdef DS_HAVE_MHD
#include "http.h"
#include "metrics.h"
#include "routes.h"
#endif

#ifdef DS_HAVE_MHD
static int serve(int argc, char **argv) {
    ds_server_config cfg;
    char msg[1024];
    int rc = ds_server_config_parse(argc, argv, &cfg, msg, sizeof msg, stdout);
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "ditserve: %s\n", msg);
        return 2;
    }
    if (cfg.demo) {
        char dir[1000];
        if (!ds_server_config_find_demo(argv[0], dir, sizeof dir, msg, sizeof msg)) {
            fprintf(stderr, "ditserve: %s\n", msg);
            return 2;
        }
        snprintf(cfg.models[0].name, sizeof cfg.models[0].name, "demo");
        snprintf(cfg.models[0].dir, sizeof cfg.models[0].dir, "%s", dir);
        cfg.n_models = 1;
    }
    ds_engine_model_spec specs[DS_CFG_MAX_MODELS];
    memset(specs, 0, sizeof specs);
    ds_err err;
    ds_err_clear(&err);
    for (int i = 0; i < cfg.n_models; i++) {
        specs[i].name = cfg.models[i].name;
        specs[i].dir = cfg.models[i].dir;
        for (int k = 0; k < cfg.n_default_cache; k++) {
            if (strcmp(cfg.default_cache[k].model, cfg.models[i].name)) continue;
            if (ds_cache_config_parse_any(cfg.default_cache[k].config, &specs[i].default_cache, &err) != DS_OK) {
                fprintf(stderr, "ditserve: --default-cache %s: %s\n", cfg.default_cache[k].model, err.msg);
                return 2;
            }
            specs[i].has_default_cache = specs[i].default_cache.enabled;
        }
    }

    /* signals: every thread created from here on blocks them; main waits for them with sigtimedwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    ds_engine_opts eo = {0};
    eo.models = specs;
    eo.n_models = cfg.n_models;
    eo.device = cfg.device;
    eo.dtype = cfg.dtype[0] ? cfg.dtype : NULL;
    eo.cuda_graphs_off = cfg.cuda_graphs_off;
    eo.attention_exact = cfg.attention_exact;
    eo.queue_size = cfg.queue_size;
    eo.job_ttl_s = cfg.job_ttl_s;
    eo.max_retained_bytes = (size_t)cfg.max_retained_mb << 20;
    eo.pipeline.max_images = cfg.max_images;
    ds_engine *eng = NULL;
    if (ds_engine_create(&eo, &eng, &err) != DS_OK) {
        fprintf(stderr, "ditserve: %s\n", err.msg);
        return 2;
    }
    const char *cors[DS_CFG_MAX_CORS];
    for (int i = 0; i < cfg.n_cors; i++) cors[i] = cfg.cors[i];
    ds_api_opts ao = {0};
    ao.limits.max_steps = cfg.max_steps;
    ao.limits.max_pixels = cfg.max_pixels;
    ao.limits.max_images = cfg.max_images;
    ao.api_key = cfg.api_key;
    ao.cors_origins = cors;
    ao.n_cors_origins = cfg.n_cors;
    ds_api *api = ds_api_create(eng, &ao);
    ds_metrics *metrics = ds_metrics_create();
    ds_http *http = NULL;
    int exit_code = 0;
    if (!api || !metrics) {
        fprintf(stderr, "ditserve: out of memory\n");
        exit_code = 1;
        goto out;
    }
    ds_http_opts ho = {.host = cfg.host,
                       .port = cfg.port,
                       .max_body = (size_t)cfg.max_body_mb << 20,
                       .max_connections = cfg.max_connections,
                       .api = api,
                       .engine = eng,
                       .metrics = metrics};
    if (ds_http_start(&ho, &http, &err) != DS_OK) {
        fprintf(stderr, "ditserve: %s\n", err.msg);
        exit_code = 1;
        goto out;
    }
    DS_LOGI("server", "listening on http://%s:%d (%d model(s), device %s, auth %s)", cfg.host, ds_http_port(http),
            cfg.n_models, cfg.device, cfg.api_key[0] ? "on" : "off");
    printf("ditserve listening on http://%s:%d\n", cfg.host, ds_http_port(http));
    fflush(stdout);

    bool ready = false;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            DS_LOGI("server", "%s: shutting down (%s jobs)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    cfg.shutdown_cancel ? "cancelling" : "finishing");
            break;
        }
        if (!ready) {
            char hm[700];
            ds_engine_health h = ds_engine_get_health(eng, hm, sizeof hm);
            if (h == DS_HEALTH_READY) {
                ready = true;
                DS_LOGI("server", "ready: every model loaded and warmed up");
            } else if (h == DS_HEALTH_FAILED) {
                fprintf(stderr, "ditserve: %s\n", hm);
                exit_code = 1;
                break;
            }
        }
    }
    ds_http_quiesce(http);
    ds_engine_shutdown(eng, cfg.shutdown_cancel || exit_code != 0);
out:
    ds_http_stop(http);
    ds_api_free(api);
    ds_metrics_free(metrics);
    ds_engine_free(eng);
    if (exit_code == 0) DS_LOGI("server", "stopped");
    return exit_code;
}
#else
static int serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "ditserve: this build has no HTTP server (libmicrohttpd was not found at configure time: "
                    "install libmicrohttpd-dev and rebuild); `ditserve generate` works\n");
    return 2;
}
#endif

static void usage(FILE *f) {
#ifdef DS_HAVE_MHD
    ds_server_config_usage(f);
#else
    fprintf(f, "usage: ditserve [--version | info | generate ... | --help]\n");
#endif
    fprintf(f, "\nsubcommands:\n"
               "  --version   print the version and the compiled backends\n"
               "  info        print the host's CPU threads and CUDA devices\n"
               "  generate    make images from a diffusers directory (ditserve generate --help)\n");
}

/* OpenMP threads that finish a parallel region spin for a while by default, taking the cores from the
 * OpenBLAS threads of the next matrix product: measured 12x slower denoising on the tiny DiT and a 14x
 * lower job rate under load (docs/PERF.md). libgomp reads OMP_WAIT_POLICY when it is loaded, before main,
 * so when the user has not chosen a policy we set "passive" and re-execute ourselves once. */
static void ensure_passive_omp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the default policy */
}

int main(int argc, char **argv) {
    ensure_passive_omp(argv);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "generate")) return ds_cli_generate(argc - 1, argv + 1);
    ds_engine_info info;
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        ds_engine_info_query(&info);
        printf("ditserve %s (cpu%s%s%s)\n", DS_VERSION, info.cuda_compiled ? ", cuda" : "", info.nccl_compiled ? ", nccl" : "",
#ifdef DS_HAVE_MHD
               ", http"
#else
               ""
#endif
        );
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "info")) {
        ds_engine_info_query(&info);
        printf("cpu_threads: %d\ncuda_compiled: %s\ncuda_devices: %d\ncuda: %s\n", info.cpu_threads,
               info.cuda_compiled ? "yes" : "no", info.cuda_devices, info.cuda_note);
        if (info.cuda_devices == 0) DS_LOGI("server", "using the CPU backend: %s", info.cuda_note);
        return 0;
    }
    if (argc >= 2 && strncmp(argv[1], "-", 1)) {
        fprintf(stderr, "ditserve: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return serve(argc, argv);
}
