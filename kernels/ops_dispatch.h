/* ops_dispatch.h - the device dispatch at the top of every ds_op_* entry point (kernels/cpu/ files):
 * when the op's first tensor argument lives on a CUDA device, the CUDA twin (cuda/ds_cuda_ops.h)
 * runs instead of the CPU reference; on a build without CUDA such a tensor is DS_ERR_UNSUPPORTED.
 * Private to kernels/. */
#ifndef DS_OPS_DISPATCH_H
#define DS_OPS_DISPATCH_H

#include "status.h"
#include "tensor.h"

#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda_ops.h"
/* DS_OP_DISPATCH(t, call): if tensor t is on CUDA, return call (a ds_cuda_op_* expression). */
#define DS_OP_DISPATCH(t, call)                                                                       \
    do {                                                                                              \
        if ((t) && (t)->device.kind == DS_DEVICE_CUDA) return (call);                                 \
    } while (0)
#else
#define DS_OP_DISPATCH(t, call)                                                                       \
    do {                                                                                              \
        if ((t) && (t)->device.kind == DS_DEVICE_CUDA)                                                \
            return DS_FAIL(err, DS_ERR_UNSUPPORTED, "a CUDA tensor, but this build has no CUDA backend"); \
    } while (0)
#endif

#endif /* DS_OPS_DISPATCH_H */
