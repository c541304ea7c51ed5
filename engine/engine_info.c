/* engine_info.c - host and build capability report (see engine_info.h). */
#include "engine_info.h"

#include <stdio.h>
#include <string.h>

#include "device.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void ds_engine_info_query(ds_engine_info *info) {
    memset(info, 0, sizeof *info);
#ifdef DS_HAVE_CUDA
    info->cuda_compiled = true;
#endif
#ifdef DS_HAVE_NCCL
    info->nccl_compiled = true;
#endif
#ifdef _OPENMP
    info->cpu_threads = omp_get_max_threads();
#else
    info->cpu_threads = 1;
#endif
    ds_err err;
    ds_err_clear(&err);
    int n = 0;
    if (ds_device_cuda_count(&n, &err) != DS_OK) {
        snprintf(info->cuda_note, sizeof info->cuda_note, "%s", err.msg);
        n = 0;
    } else if (n > 0) {
        ds_device_cuda_name(0, info->cuda_note, sizeof info->cuda_note);
    } else {
        snprintf(info->cuda_note, sizeof info->cuda_note, "no CUDA device found");
    }
    info->cuda_devices = n;
}
