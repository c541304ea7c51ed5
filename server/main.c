/* main.c - the `ditserve` binary: command-line entry point. The only place that may exit().
 * It reports the build and host (`ditserve --version`, `ditserve info`) and runs one-off generations
 * (`ditserve generate`, server/cli_generate.c); the HTTP server arrives with the server issue. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine_info.h"
#include "log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ditserve [--version | info | generate ... | --help]\n"
            "  --version   print the version and the compiled backends\n"
            "  info        print the host's CPU threads and CUDA devices\n"
            "  generate    make images from a diffusers directory (ditserve generate --help)\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "generate")) return ds_cli_generate(argc - 1, argv + 1);
    ds_engine_info info;
    if (!strcmp(argv[1], "--version")) {
        ds_engine_info_query(&info);
        printf("ditserve %s (cpu%s%s)\n", DS_VERSION, info.cuda_compiled ? ", cuda" : "", info.nccl_compiled ? ", nccl" : "");
        return 0;
    }
    if (!strcmp(argv[1], "info")) {
        ds_engine_info_query(&info);
        printf("cpu_threads: %d\ncuda_compiled: %s\ncuda_devices: %d\ncuda: %s\n", info.cpu_threads,
               info.cuda_compiled ? "yes" : "no", info.cuda_devices, info.cuda_note);
        if (info.cuda_devices == 0) DS_LOGI("server", "using the CPU backend: %s", info.cuda_note);
        return 0;
    }
    fprintf(stderr, "ditserve: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
