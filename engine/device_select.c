/* device_select.c - --device / --dtype resolution with GPU detection (device_select.h). */
#include "device_select.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

static void set_note(char *note, size_t cap, const char *text) {
    if (note && cap) snprintf(note, cap, "%s", text);
}

ds_status ds_device_select(const char *device, const char *dtype, ds_placement *out, char *note, size_t note_cap,
                           ds_err *err) {
    const char *dev = device && device[0] ? device : "auto";
    *out = ds_placement_cpu();
    int index = -1; /* -1: auto */
    bool want_cuda = false;
    if (!strcmp(dev, "cpu")) {
        want_cuda = false;
    } else if (!strcmp(dev, "auto")) {
        index = -1;
    } else if (!strcmp(dev, "cuda")) {
        want_cuda = true;
        index = 0;
    } else if (!strncmp(dev, "cuda:", 5)) {
        char *end;
        errno = 0;
        long v = strtol(dev + 5, &end, 10);
        if (errno || *end || end == dev + 5 || v < 0 || v > 255)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "device '%s': expected auto, cpu, cuda or cuda:N", dev);
        want_cuda = true;
        index = (int)v;
    } else {
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "device '%s': expected auto, cpu, cuda or cuda:N", dev);
    }

    if (!strcmp(dev, "auto") || want_cuda) {
        int n = 0;
        ds_err e;
        ds_err_clear(&e);
        ds_status s = ds_device_cuda_count(&n, &e);
        const char *why = s != DS_OK ? e.msg : (n == 0 ? "the CUDA runtime reports no device" : NULL);
        if (want_cuda) {
            if (why) return DS_FAIL(err, DS_ERR_DEVICE, "device %s requested but not usable: %s", dev, why);
            if (index >= n)
                return DS_FAIL(err, DS_ERR_DEVICE, "device %s requested but only %d CUDA device(s) exist", dev, n);
        } else if (why) {
            char buf[512];
            snprintf(buf, sizeof buf, "using the CPU backend (f32): no usable GPU: %.400s", why);
            set_note(note, note_cap, buf);
        } else {
            index = 0;
            want_cuda = true;
        }
    }
    const char *dt = dtype && dtype[0] ? dtype : NULL;
    if (!want_cuda) {
        if (dt && strcmp(dt, "f32") && strcmp(dt, "float32"))
            return DS_FAIL(err, DS_ERR_UNSUPPORTED, "dtype '%s': the CPU backend computes in f32", dt);
        if (strcmp(dev, "auto")) set_note(note, note_cap, "using the CPU backend (f32): --device cpu");
        return DS_OK;
    }
    ds_dtype t = DS_BF16;
    if (dt) DS_TRY(ds_dtype_parse(dt, &t, err));
    out->device = (ds_device){DS_DEVICE_CUDA, index};
    out->dtype = t;
    char name[256], buf[512];
    ds_device_cuda_name(index, name, sizeof name);
    snprintf(buf, sizeof buf, "using cuda:%d (%s), weights and activations in %s", index, name, ds_dtype_name(t));
    set_note(note, note_cap, buf);
    return DS_OK;
}
