/* queue.h - a bounded FIFO of job pointers (a ring buffer). Not thread-safe by itself: the engine
 * guards each worker's queue with its lock. The queue does not own the jobs' references. */
#ifndef DS_QUEUE_H
#define DS_QUEUE_H

#include <stdbool.h>

#include "job.h"
#include "status.h"

typedef struct ds_queue {
    ds_job **items; /* [cap] ring, owned */
    int      cap, head, len;
} ds_queue;

/* Allocate a queue of capacity cap (>= 1). Errors: DS_ERR_INVALID_ARG (cap < 1), DS_ERR_OOM. */
ds_status ds_queue_init(ds_queue *q, int cap, ds_err *err);

/* Release the ring (the jobs are not touched). NULL allowed. */
void ds_queue_free(ds_queue *q);

/* Append j at the tail. Errors: DS_ERR_BUSY when the queue holds cap jobs (the message says so). */
ds_status ds_queue_push(ds_queue *q, ds_job *j, ds_err *err);

/* Remove and return the head, NULL when empty. */
ds_job *ds_queue_pop(ds_queue *q);

/* Remove j wherever it is (order of the rest kept). Returns false when j is not queued. */
bool ds_queue_remove(ds_queue *q, const ds_job *j);

/* 0-based position of j from the head, -1 when absent. */
int ds_queue_position(const ds_queue *q, const ds_job *j);

#endif /* DS_QUEUE_H */
