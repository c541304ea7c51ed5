/* device_select.h - turning the user's --device / --dtype strings into a placement, with GPU detection:
 * "auto" is cuda:0 when the CUDA runtime reports a device and the CPU otherwise (with the reason), "cpu"
 * is the CPU, "cuda" / "cuda:N" require that device. Used by the server (engine) and `ditserve generate`. */
#ifndef DS_DEVICE_SELECT_H
#define DS_DEVICE_SELECT_H

#include <stddef.h>

#include "placement.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Resolve `device` ("auto" or NULL/"" = auto, "cpu", "cuda", "cuda:N") and `dtype` (NULL/"" = bf16 on
 * CUDA; "bf16", "f16", "f32"; the CPU computes in f32 and accepts only "f32" or the default) into *out.
 * `note` (may be NULL) receives one line for the log saying what was chosen and, for auto without a GPU,
 * why (e.g. "no CUDA device: this build has no CUDA backend"). Errors: DS_ERR_INVALID_ARG (a malformed
 * string, naming it), DS_ERR_DEVICE (cuda requested but not usable: the runtime's reason, or an ordinal
 * beyond the device count), DS_ERR_UNSUPPORTED (a non-f32 dtype on the CPU). */
ds_status ds_device_select(const char *device, const char *dtype, ds_placement *out, char *note, size_t note_cap,
                           ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_DEVICE_SELECT_H */
