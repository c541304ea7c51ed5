/* queue.c - bounded FIFO ring of job pointers (see queue.h). */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

ds_status ds_queue_init(ds_queue *q, int cap, ds_err *err) {
    memset(q, 0, sizeof *q);
    if (cap < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "queue capacity %d: must be at least 1", cap);
    q->items = calloc((size_t)cap, sizeof *q->items);
    if (!q->items) return DS_FAIL(err, DS_ERR_OOM, "out of memory for a queue of %d jobs", cap);
    q->cap = cap;
    return DS_OK;
}

void ds_queue_free(ds_queue *q) {
    if (!q) return;
    free(q->items);
    memset(q, 0, sizeof *q);
}

ds_status ds_queue_push(ds_queue *q, ds_job *j, ds_err *err) {
    if (q->len >= q->cap)
        return DS_FAIL(err, DS_ERR_BUSY, "the queue is full (%d jobs waiting); retry later", q->cap);
    q->items[(q->head + q->len) % q->cap] = j;
    q->len++;
    return DS_OK;
}

ds_job *ds_queue_pop(ds_queue *q) {
    if (q->len == 0) return NULL;
    ds_job *j = q->items[q->head];
    q->items[q->head] = NULL;
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return j;
}

int ds_queue_position(const ds_queue *q, const ds_job *j) {
    for (int i = 0; i < q->len; i++)
        if (q->items[(q->head + i) % q->cap] == j) return i;
    return -1;
}

bool ds_queue_remove(ds_queue *q, const ds_job *j) {
    int pos = ds_queue_position(q, j);
    if (pos < 0) return false;
    for (int i = pos; i < q->len - 1; i++)
        q->items[(q->head + i) % q->cap] = q->items[(q->head + i + 1) % q->cap];
    q->items[(q->head + q->len - 1) % q->cap] = NULL;
    q->len--;
    return true;
}
