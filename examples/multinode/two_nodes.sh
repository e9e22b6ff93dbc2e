#!/bin/sh
# two_nodes.sh - the torchrun-style launch on two machines, without a scheduler. Run it on each
# node with its node rank (0 on the node whose address is MASTER), e.g.
#   node0$ examples/multinode/two_nodes.sh 0
#   node1$ examples/multinode/two_nodes.sh 1
# Each starts NPROC ranks; together they are 2 * NPROC ranks meeting at MASTER:PORT.
set -eu
NODE_RANK=${1:?usage: two_nodes.sh NODE_RANK}
MASTER=${MASTER:-node0}
PORT=${PORT:-29500}
NPROC=${NPROC:-8}
exec ./run_sft --nproc-per-node "$NPROC" --nnodes 2 --node-rank "$NODE_RANK" \
    --master-addr "$MASTER" --master-port "$PORT" output_dir=/shared/saves/two-nodes
