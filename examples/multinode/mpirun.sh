#!/bin/sh
# mpirun.sh - one trainer on the hosts of an Open MPI hostfile, without a scheduler, e.g. two
# nodes of 8 GPUs:  examples/multinode/mpirun.sh hosts   (hosts: "node0 slots=8", "node1 slots=8")
# No MASTER_ADDR is needed: the ranks learn rank 0's address and a free port from Open MPI, whose
# library (libmpi.so.40) the trainer loads at run time (LLFC_MPI names another). On nodes
# without it, give the address instead: mpirun -x MASTER_ADDR=node0 -x MASTER_PORT=29500 ...
# ./run_sft and output_dir must be at the same path on every node (a shared file system).
set -eu
HOSTS=${1:?usage: mpirun.sh HOSTFILE}
NP=${NP:-16}
exec mpirun -np "$NP" --hostfile "$HOSTS" ./run_sft output_dir="$PWD/saves/mpirun" ddp_timeout=1800
