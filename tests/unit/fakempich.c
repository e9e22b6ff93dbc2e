/* fakempich.c - an MPI library that is not Open MPI's, as test_mpiboot loads it in its place:
 * MPI's functions with MPICH's integer handles (MPI_Comm, MPI_Datatype are ints there), and
 * none of Open MPI's predefined objects (ompi_mpi_comm_world, ompi_mpi_byte). Every call
 * fails: mpiboot must refuse the library before calling any. */

int MPI_Init(int *argc, char ***argv);
int MPI_Finalize(void);
int MPI_Comm_rank(int comm, int *rank);
int MPI_Comm_size(int comm, int *size);
int MPI_Bcast(void *buf, int count, int type, int root, int comm);
int MPI_Error_string(int code, char *text, int *len);

enum { MPI_ERR_OTHER = 15 };

int MPI_Init(int *argc, char ***argv) { return (void)argc, (void)argv, MPI_ERR_OTHER; }
int MPI_Finalize(void) { return MPI_ERR_OTHER; }
int MPI_Comm_rank(int comm, int *rank) { return (void)comm, (void)rank, MPI_ERR_OTHER; }
int MPI_Comm_size(int comm, int *size) { return (void)comm, (void)size, MPI_ERR_OTHER; }
int MPI_Bcast(void *buf, int count, int type, int root, int comm) {
    return (void)buf, (void)count, (void)type, (void)root, (void)comm, MPI_ERR_OTHER;
}
int MPI_Error_string(int code, char *text, int *len) { return (void)code, (void)text, (void)len, MPI_ERR_OTHER; }
