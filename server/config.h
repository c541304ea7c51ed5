/* config.h - the server's configuration from command-line flags and their DITSERVE_* environment twins
 * (a flag wins over its variable; repeatable flags take comma-separated lists in the variable), validated
 * into one struct. `ditserve --help` prints ds_server_config_usage. */
#ifndef DS_SERVER_CONFIG_H
#define DS_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define DS_CFG_MAX_MODELS 16
#define DS_CFG_MAX_CORS 8

typedef struct ds_server_config {
    struct {
        char name[64];
        char dir[1024];
    } models[DS_CFG_MAX_MODELS];
    int  n_models;
    bool demo;                 /* no --model: the demo model as "demo" */
    char device[32];           /* --device [auto] */
    char dtype[8];             /* --dtype ["": bf16 on a GPU, f32 on the CPU] */
    bool cuda_graphs_off;      /* --cuda-graphs off [on]: replay denoising work as CUDA graphs */
    bool attention_exact;      /* --attention exact [fast]: fp32-inside attention instead of tensor cores */
    char host[256];            /* --host [127.0.0.1] */
    int  port;                 /* --port [8080]; 0 = any free port (printed at start) */
    char api_key[256];         /* --api-key ["" = open] */
    int  queue_size;           /* --queue-size [16] */
    double job_ttl_s;          /* --job-ttl seconds [600] */
    int  max_body_mb;          /* --max-body-mb [16] */
    int  max_steps;            /* --max-steps [200] */
    long max_pixels;           /* --max-pixels [1048576] */
    int  max_images;           /* --max-images [4] */
    int  max_retained_mb;      /* --max-retained-mb: finished jobs' memory [256] */
    struct {
        char model[64];
        char config[1024];
    } default_cache[DS_CFG_MAX_MODELS];
    int  n_default_cache;      /* --default-cache NAME=CONFIG */
    char cors[DS_CFG_MAX_CORS][256];
    int  n_cors;               /* --cors-origin, repeatable */
    bool shutdown_cancel;      /* --on-shutdown cancel (default finish) */
    int  max_connections;      /* --max-connections [256] */
} ds_server_config;

/* Parse argv[0..argc) (argv[0] is not a flag: the program or subcommand name) over the environment.
 * Returns 0 on success, 1 when --help was printed to `out`, 2 on an error (one line in msg). */
int ds_server_config_parse(int argc, char **argv, ds_server_config *c, char *msg, size_t cap, FILE *out);

/* Print the server's usage (every flag, its variable and default). */
void ds_server_config_usage(FILE *f);

/* Find the demo model: $DITSERVE_DEMO_DIR, else <directory of exe>/../../assets/demo (the build tree),
 * <directory of exe>/../share/ditserve/demo (an install) and, last, the source tree the binary was built
 * from (a build directory elsewhere). Returns true with the directory in buf; false
 * with msg naming the places looked at. */
bool ds_server_config_find_demo(const char *exe, char *buf, size_t cap, char *msg, size_t msg_cap);

#endif /* DS_SERVER_CONFIG_H */
