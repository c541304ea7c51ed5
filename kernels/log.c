/* log.c - implementation of the module-tagged logger declared in log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1; /* -1: not yet read from the environment */

static int level_from_env(void) {
    const char *s = getenv("DS_LOG_LEVEL");
    if (!s) return DS_LOG_INFO;
    if (!strcmp(s, "debug")) return DS_LOG_DEBUG;
    if (!strcmp(s, "warn")) return DS_LOG_WARN;
    if (!strcmp(s, "error")) return DS_LOG_ERROR;
    return DS_LOG_INFO;
}

void ds_log_set_level(ds_log_level level) { g_level = (int)level; }

ds_log_level ds_log_get_level(void) {
    if (g_level < 0) g_level = level_from_env();
    return (ds_log_level)g_level;
}

void ds_log(ds_log_level level, const char *module, const char *fmt, ...) {
    if ((int)level < (int)ds_log_get_level()) return;
    static const char tags[] = "DIWE";
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char body[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %c [%s] %s\n", stamp, tags[level], module ? module : "-", body);
}
