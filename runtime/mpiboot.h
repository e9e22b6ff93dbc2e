/* mpiboot.h - the launcher's MPI (Open MPI, or one of MPICH's ABI: MPICH, Intel MPI, MVAPICH2),
 * loaded at run time, so that ranks started by mpirun / mpiexec meet with no MASTER_ADDR: rank
 * 0's address and port reach every rank by MPI_Bcast, then the TCP rendezvous of dist.h runs as
 * under torchrun; NCCL's unique id goes by MPI_Bcast too.
 *
 *   DistPlace p;
 *   dist_place_from_env(&p, NULL, err, errlen);     under mpirun: DIST_MPI / DIST_MPICH, master_addr "" when unset
 *   mpiboot_find_master(&p, err, errlen);           MPI up; p->master_addr, p->master_port from rank 0
 *   DistGroup *g = dist_connect(&p, ...);           the rendezvous, unchanged
 *   ...                                             nccl.c: mpiboot_broadcast(id, 128, ...) while MPI is up
 *   mpiboot_set_exit_status(rc);                    main's: MPI_Finalize at exit when it is 0
 *
 * When: only under an MPI launcher (dist_source_is_mpi) with several ranks and no MASTER_ADDR.
 * A run given MASTER_ADDR (mpirun -x MASTER_ADDR=host0 -x MASTER_PORT=29500) meets over TCP as
 * before and never loads MPI, so NCCL's id goes over TCP there too: the user chose the
 * rendezvous, and MPI's library need not exist on the nodes then.
 *
 * The library: $LLFC_MPI when set (then only there), else, under Open MPI's mpirun (its
 * OMPI_COMM_WORLD_* or PMIx's variables), libmpi.so.40 (Open MPI 3 to 5) then libmpi.so; under
 * Hydra (MPICH's mpiexec, also Intel MPI's and MVAPICH2's: PMI_RANK, PMI_SIZE), libmpi.so.12
 * (MPICH's ABI soname), libmpich.so.12 (Debian's name for it), libmpi.so. dlopen'ed RTLD_NOW |
 * RTLD_GLOBAL, because Open MPI's plugins (mca_*.so, which it dlopens itself) take its symbols
 * from the global scope. Never linked: a trainer is shipped to clusters that may have no MPI.
 * Two ABIs are spoken: Open MPI's, where MPI_COMM_WORLD and MPI_BYTE are the addresses of its
 * global objects ompi_mpi_comm_world and ompi_mpi_byte (mpi.h: OMPI_PREDEFINED_GLOBAL(type, g)
 * is ((type) &(g))), and MPICH's, where they are the integers 0x44000000 and 0x4c00010d (a
 * library without Open MPI's objects whose MPI_Get_library_version names MPICH, Intel MPI or
 * MVAPICH). Any other MPI is refused by name, with the ways out.
 *
 * MPI starts once per process (a second MPI_Init is an error), so this module keeps the one
 * library and its state itself, process-wide. Its calls have no timeout (MPI has none): they
 * come right after MPI_Init, or right after the ranks agreed over TCP within ddp_timeout, and a
 * rank that dies makes mpirun end the job.
 */
#ifndef LLFC_MPIBOOT_H
#define LLFC_MPIBOOT_H

#include <stdbool.h>
#include <stddef.h>

#include "dist.h"

/* Under mpirun with more than one rank and no MASTER_ADDR: start MPI, check that its rank and
 * size are p's (the launcher's variables), and set p->master_addr and (when rank 0 had no
 * MASTER_PORT) p->master_port to what rank 0 picked: its address that the others can reach and
 * a free port. Otherwise nothing happens. false with err when the library is missing or of
 * another ABI, or MPI disagrees with the variables. */
bool mpiboot_find_master(DistPlace *p, char *err, size_t errlen);

/* Whether MPI is up in this process (mpiboot_find_master started it). */
bool mpiboot_active(void);

/* Rank 0's n bytes to every rank, by MPI_Bcast on MPI_COMM_WORLD; every rank calls it, and
 * only while MPI is up. */
bool mpiboot_broadcast(void *buf, size_t n, char *err, size_t errlen);

/* "Open MPI v4.1.4 (libmpi.so.40)", "MPICH Version:      4.0.2 (libmpich.so.12)": what was
 * started, for messages; "" before. */
const char *mpiboot_library(void);

/* How this process will end (main's status): MPI_Finalize runs at exit (atexit) when MPI is up
 * and the status was 0. A failed rank, or one that exits any other way, leaves without it: Open
 * MPI's MPI_Finalize waits for every rank, and one that hangs would keep this one from ever
 * exiting, while a non-zero exit makes mpirun stop the whole job. (MPICH's may too.) */
void mpiboot_set_exit_status(int exit_status);

#endif
