/* nccl.h - NCCL, loaded with dlopen from the machine the trainer runs on (never linked), and
 * the collectives data parallel needs, on device memory:
 *
 *     bool absent;
 *     NclComm *c = ncl_open(group, drv, ddp_timeout, &absent, err, errlen);  every rank calls it
 *     ncl_allreduce_sum(c, grads, grads, n, NULL, "gradients", err, errlen); on the GPUs
 *     ncl_close(c);
 *
 * Prefix ncl_ (NCCL's own symbols are nccl*). Where the library is looked for: $LLFC_NCCL
 * when set (then only there: a path the user names is the one used, as with LLFC_CUBLASLT),
 * else $CUDA_HOME/lib64/libnccl.so.2, /usr/local/cuda/lib64/libnccl.so.2 and libnccl.so.2 on
 * the loader's path (LD_LIBRARY_PATH, /etc/ld.so.cache), in that order. The few types and
 * enum values of nccl.h used here are declared in nccl.c (checked against NCCL 2.28's header),
 * so building needs no NCCL.
 *
 * The rendezvous: rank 0's ncclGetUniqueId travels to the others over the TCP group (dist.h),
 * or by MPI_Bcast when Open MPI is up (mpirun without MASTER_ADDR: mpiboot.h), then every rank
 * starts its communicator on the GPU whose context is current: with NCCL >= 2.14 a
 * non-blocking one (ncclCommInitRankConfig, config.blocking = 0), polled like a collective.
 *
 * Hang safety: the communicator's start and every collective are polled (ncclCommGetAsyncError,
 * and for a collective enqueued on a stream the driver's cuStreamQuery) until they finish; one
 * that has not finished within the timeout (the recipe's ddp_timeout: a peer died, hangs or never
 * came) aborts the communicator (ncclCommAbort) and fails naming the call, this rank and the world
 * size, and the timeout. After such a failure the communicator is unusable. (An NCCL older than
 * 2.14 has only the blocking ncclCommInitRank, which is not timed: see nccl.c's start_comm.)
 *
 * Overlap: ncl_start_* enqueue a collective and return at once (the GPU runs it when its stream
 * gets there, while the caller goes on launching), ncl_wait then polls as above until everything
 * started on that stream has finished:
 *
 *     ncl_start_allreduce_sum(c, g1, g1, n1, comm_stream, "layer 4", err, errlen);   backward goes on
 *     ncl_start_allreduce_sum(c, g0, g0, n0, comm_stream, "layer 3", err, errlen);
 *     ncl_wait(c, comm_stream, err, errlen);    both done; or "ncclAllReduce (layer 4, ...) or the
 *                                                collective started after it did not finish within ..."
 */
#ifndef LLFC_NCCL_H
#define LLFC_NCCL_H

#include <stdbool.h>
#include <stddef.h>

#include "cudrv.h"
#include "dist.h"

typedef struct NclComm NclComm;

/* Every rank of g calls this together. Load NCCL and start the communicator of g's ranks on the
 * GPU of d (whose context must be current). When any rank has no usable NCCL (not found, a
 * library without NCCL's functions) or NCCL cannot start there (ranks sharing a GPU, ...), every
 * rank returns NULL with *absent set, so all fall back alike, and err says why (this rank's own
 * reason, or which rank failed): that includes a start that did not finish within timeout_s on
 * some rank. NULL with *absent false: the TCP group failed (a peer died), then err also says why
 * NCCL did not start here when it did not. d may be NULL (tests): then a collective is done when
 * ncclCommGetAsyncError stops saying ncclInProgress. */
NclComm *ncl_open(DistGroup *g, CuDrv *d, int timeout_s, bool *absent, char *err, size_t errlen);
/* ncclCommDestroy; NULL is fine. */
void ncl_close(NclComm *c);

/* "2.28.9" and the path it was loaded from. */
const char *ncl_version(const NclComm *c);
const char *ncl_path(const NclComm *c);
/* How NCCL's unique id went from rank 0 to the ranks: "MPI_Bcast" (Open MPI) or "TCP" (the group). */
const char *ncl_id_route(const NclComm *c);

/* Where libnccl is looked for now (see above), in order: up to 4 paths into paths[], their count. */
size_t ncl_lib_paths(char paths[4][512]);

/* Collectives on fp32 device buffers of n elements, enqueued on stream (NULL: the legacy default
 * stream, the one the executor uses) and waited for (see hang safety above); with collectives
 * started and not waited for, only on their stream. send == recv is in
 * place. `what` names the data in errors: "ncclAllReduce (gradients, 123456 floats) failed: ...".
 * Sums add the ranks' values as NCCL does (its order, which is not rank order on every topology). */
bool ncl_allreduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, void *stream, const char *what, char *err,
                       size_t errlen);
/* The sum into root's recv only. */
bool ncl_reduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                    char *err, size_t errlen);
/* root's send into every rank's recv. */
bool ncl_broadcast(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what, char *err,
                   size_t errlen);
/* The same for n bytes of any type (ncclUint8): bf16 weights, say. */
bool ncl_broadcast_bytes(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                         char *err, size_t errlen);

/* The sums above, enqueued on stream and not waited for (see overlap above): what the caller must
 * not touch (send, recv) until ncl_wait returns. Every collective not yet waited for must be on one
 * stream. An error here is NCCL refusing the call; the collective's own comes from ncl_wait. */
bool ncl_start_allreduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, void *stream, const char *what, char *err,
                             size_t errlen);
bool ncl_start_reduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                          char *err, size_t errlen);
bool ncl_start_broadcast_bytes(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream,
                               const char *what, char *err, size_t errlen);
/* Besides ncl_wait, another stream may wait for them on the GPU: an event recorded on their
 * stream after them, which that stream waits for (cudrv_event_record, cudrv_stream_wait); the
 * buffers are then the caller's again on that stream, and ncl_wait still ends the lot. */
/* Wait for every collective started on stream since the last wait (none: true at once), with the
 * hang safety above; an error names the first of them (and how many were started after it). */
bool ncl_wait(NclComm *c, void *stream, char *err, size_t errlen);

#endif
