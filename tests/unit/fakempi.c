/* fakempi.c - an MPI library of neither ABI mpiboot speaks, as test_mpiboot loads it in its
 * place: MPI's functions with integer handles (as MPICH's), none of Open MPI's predefined
 * objects (ompi_mpi_comm_world, ompi_mpi_byte), and a version that names no MPICH, Intel MPI or
 * MVAPICH. Every call but MPI_Get_library_version (which MPI allows before MPI_Init) fails:
 * mpiboot must refuse the library before calling any. */
#include <stdio.h>

int MPI_Init(int *argc, char ***argv);
int MPI_Finalize(void);
int MPI_Comm_rank(int comm, int *rank);
int MPI_Comm_size(int comm, int *size);
int MPI_Bcast(void *buf, int count, int type, int root, int comm);
int MPI_Error_string(int code, char *text, int *len);
int MPI_Get_library_version(char *version, int *len);

enum { MPI_ERR_OTHER = 15 };

int MPI_Init(int *argc, char ***argv) { return (void)argc, (void)argv, MPI_ERR_OTHER; }
int MPI_Finalize(void) { return MPI_ERR_OTHER; }
int MPI_Comm_rank(int comm, int *rank) { return (void)comm, (void)rank, MPI_ERR_OTHER; }
int MPI_Comm_size(int comm, int *size) { return (void)comm, (void)size, MPI_ERR_OTHER; }
int MPI_Bcast(void *buf, int count, int type, int root, int comm) {
    return (void)buf, (void)count, (void)type, (void)root, (void)comm, MPI_ERR_OTHER;
}
int MPI_Error_string(int code, char *text, int *len) { return (void)code, (void)text, (void)len, MPI_ERR_OTHER; }
int MPI_Get_library_version(char *version, int *len) {
    *len = snprintf(version, 64, "FakeMPI 0.1, an ABI of its own\nbuilt for test_mpiboot");
    return 0;
}
