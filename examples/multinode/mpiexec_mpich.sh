#!/bin/sh
# mpiexec_mpich.sh - one trainer on the hosts of a hostfile, launched by MPICH's mpiexec (Hydra;
# Intel MPI's and MVAPICH2's mpiexec take the same flags), e.g. two nodes of 8 GPUs:
#   examples/multinode/mpiexec_mpich.sh hosts      (hosts: "node0:8", "node1:8")
# No MASTER_ADDR is needed: the ranks (PMI_RANK, PMI_SIZE) learn rank 0's address and a free port
# from MPICH, whose library (libmpi.so.12, Debian's libmpich.so.12) the trainer loads at run time
# (LLFC_MPI names another). On nodes without it: mpiexec -genv MASTER_ADDR node0 -genv MASTER_PORT 29500 ...
# ./run_sft and output_dir must be at the same path on every node (a shared file system).
set -eu
HOSTS=${1:?usage: mpiexec_mpich.sh HOSTFILE}
NP=${NP:-16}
MPIEXEC=${MPIEXEC:-mpiexec.mpich}
exec "$MPIEXEC" -n "$NP" -f "$HOSTS" ./run_sft output_dir="$PWD/saves/mpiexec" ddp_timeout=1800
