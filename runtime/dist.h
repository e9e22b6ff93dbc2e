/* dist.h - where this process sits in a multi-process run, and how the processes find each
 * other: a trainer reads its place from the variables cluster launchers already set, meets
 * the other ranks over TCP at MASTER_ADDR:MASTER_PORT, and can start N local copies of itself.
 *
 *   DistPlace p;
 *   if (!dist_place_from_env(&p, NULL, err, sizeof err)) ...   // torchrun, SLURM, Open MPI, none
 *   DistGroup *g = dist_connect(&p, timeout_s, err, sizeof err); // rendezvous (world > 1)
 *   dist_broadcast(g, nccl_id, 128, err, sizeof err);           // rank 0's bytes to every rank
 *
 * Which variables win when several launchers' are present: torchrun's (RANK, WORLD_SIZE, ...)
 * over SLURM's over Open MPI's / PMIx's over MPICH Hydra's (PMI_RANK, ...): `srun torchrun ...`
 * and `mpirun` under SLURM both do what their outer tool means. A run with none of them is rank
 * 0 of 1.
 *
 * The group is a star over TCP (rank 0 in the middle): enough for exchanging NCCL's unique id,
 * host names and barriers, and for the CPU executor's collectives in tests. Every wait has a
 * deadline (the recipe's ddp_timeout); a rank that dies or hangs is reported by rank and host.
 */
#ifndef LLFC_DIST_H
#define LLFC_DIST_H

#include <stdbool.h>
#include <stddef.h>

/* DIST_MPI: Open MPI's mpirun (or another PMIx launcher); DIST_MPICH: MPICH's Hydra (mpiexec of
 * MPICH, Intel MPI, MVAPICH2), whose ranks have PMI_RANK / PMI_SIZE. */
typedef enum { DIST_NONE, DIST_TORCHRUN, DIST_SLURM, DIST_MPI, DIST_MPICH } DistSource;

typedef struct {
    int rank, world_size;            /* global */
    int local_rank, local_world_size; /* on this node */
    char master_addr[256];           /* "" when world_size is 1, or under mpirun without MASTER_ADDR */
    int master_port;
    bool master_port_set;            /* MASTER_PORT was given (else the default or SLURM's) */
    DistSource source;
    char host[256]; /* this machine's name (gethostname) */
} DistPlace;

/* Read the place from envp ("KEY=VALUE" strings, NULL-terminated; NULL means the process's
 * environment). A malformed or contradictory value is an error naming the variable; several
 * ranks without MASTER_ADDR are one too, except under mpirun, where master_addr stays "" for
 * mpiboot_find_master (mpiboot.h) to learn rank 0's from Open MPI. */
bool dist_place_from_env(DistPlace *p, char *const *envp, char *err, size_t errlen);
const char *dist_source_name(DistSource s); /* "torchrun", "SLURM", "Open MPI", "MPICH", "none" */
/* Whether s is an MPI launcher's (mpiboot.h can learn rank 0's address from its MPI). */
bool dist_source_is_mpi(DistSource s);

/* The first host of a SLURM host list ("node[07-09,12],gpu3" -> "node07"), into out. */
bool dist_first_host(const char *nodelist, char *out, size_t outlen);

typedef struct DistGroup DistGroup;

/* Meet the other ranks: rank 0 listens on master_port, the others connect to
 * master_addr:master_port (retrying until timeout_s). Ranks check each other's world size
 * and that every rank arrived once. World size 1 gives a group without sockets. */
DistGroup *dist_connect(const DistPlace *p, int timeout_s, char *err, size_t errlen);
void dist_close(DistGroup *g);

/* Host name of a rank, as it said at the rendezvous. */
const char *dist_host_of(const DistGroup *g, int rank);

/* Rank 0's n bytes to every rank. */
int dist_rank(const DistGroup *g);
int dist_world(const DistGroup *g);
bool dist_broadcast(DistGroup *g, void *buf, size_t n, char *err, size_t errlen);
/* Every rank's floats summed, in rank order (the same bits on every rank), into buf. */
bool dist_allreduce_sum(DistGroup *g, float *buf, size_t n, char *err, size_t errlen);
bool dist_allreduce_sum_f64(DistGroup *g, double *buf, size_t n, char *err, size_t errlen);
bool dist_barrier(DistGroup *g, char *err, size_t errlen);
/* Rank root's n bytes to every rank (ZeRO: an owner's updated parameters). */
bool dist_broadcast_from(DistGroup *g, int root, void *buf, size_t n, char *err, size_t errlen);
/* Every rank's floats summed (rank order) into root's buf; the others' buf is undefined after
 * (rank 0, the star's middle, keeps the sum it made) (ZeRO-2: a gradient reaches only the rank
 * that owns its parameter). */
bool dist_reduce_sum_to(DistGroup *g, int root, float *buf, size_t n, char *err, size_t errlen);
/* Rank from's n bytes into rank to's buf; the other ranks return at once (rank 0 relays when
 * neither end is rank 0). Every rank calls it (ZeRO-3: an owner's parameter to rank 0). */
bool dist_send_to(DistGroup *g, int from, int to, void *buf, size_t n, char *err, size_t errlen);

/* A TCP port that nobody listens on now (the kernel's pick; 29500 when it gives none). */
int dist_free_port(void);

/* `--nproc-per-node N`: start N copies of this program (argv without the launcher options)
 * as ranks of one node with torchrun's variables set, wait for them, and stop the others when
 * one fails (naming it). nnodes/node_rank/master_addr/master_port make it one node of
 * several, like torchrun's flags; master_port 0 picks a free port on a single node.
 * Returns the exit status for the launcher: 0 when every rank succeeded. */
int dist_launch(int nproc_per_node, int nnodes, int node_rank, const char *master_addr,
                int master_port, char **argv);

#endif
