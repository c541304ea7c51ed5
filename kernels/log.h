/* log.h - leveled logging with a module tag: "2026-11-26T15:42:25Z I [kernels] message".
 *
 * The level comes from ds_log_set_level() or, at first use, the DS_LOG_LEVEL environment variable
 * (debug|info|warn|error; default info). Thread-safe: each line is written with one fprintf. */
#ifndef DS_LOG_H
#define DS_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ds_log_level { DS_LOG_DEBUG = 0, DS_LOG_INFO, DS_LOG_WARN, DS_LOG_ERROR } ds_log_level;

/* Set the minimum level that is printed (to stderr). */
void ds_log_set_level(ds_log_level level);

/* Current minimum level. */
ds_log_level ds_log_get_level(void);

/* Print one line if `level` passes the threshold. `module` is a short tag such as "models". */
void ds_log(ds_log_level level, const char *module, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define DS_LOGD(mod, ...) ds_log(DS_LOG_DEBUG, (mod), __VA_ARGS__)
#define DS_LOGI(mod, ...) ds_log(DS_LOG_INFO, (mod), __VA_ARGS__)
#define DS_LOGW(mod, ...) ds_log(DS_LOG_WARN, (mod), __VA_ARGS__)
#define DS_LOGE(mod, ...) ds_log(DS_LOG_ERROR, (mod), __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* DS_LOG_H */
