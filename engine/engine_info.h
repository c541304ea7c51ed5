/* engine_info.h - what this build and this host can run: compiled backends, CPU threads, CUDA
 * devices. Used by `ditserve --version` now and by /health and the device choice later. */
#ifndef DS_ENGINE_INFO_H
#define DS_ENGINE_INFO_H

#include <stdbool.h>

#include "status.h"

typedef struct ds_engine_info {
    bool cuda_compiled;     /* built with the CUDA backend */
    bool nccl_compiled;     /* built with NCCL */
    int  cpu_threads;       /* threads the CPU ops use (OpenMP), 1 without OpenMP */
    int  cuda_devices;      /* usable CUDA devices (0 when none or not compiled) */
    char cuda_note[DS_ERR_MSG_LEN];  /* why there are no CUDA devices, or the first device's name */
} ds_engine_info;

/* Fill *info. Never fails: a missing driver or GPU is reported in cuda_note with cuda_devices = 0. */
void ds_engine_info_query(ds_engine_info *info);

#endif /* DS_ENGINE_INFO_H */
