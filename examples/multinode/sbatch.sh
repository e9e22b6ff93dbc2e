#!/bin/bash
# sbatch.sh - one trainer on 2 nodes under SLURM: `sbatch examples/multinode/sbatch.sh`.
# srun starts one task per rank; each rank reads SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
# SLURM_STEP_TASKS_PER_NODE and SLURM_STEP_NODELIST, meets the others at the first node of
# the step (port 20000 + SLURM_JOB_ID % 20000 unless MASTER_ADDR / MASTER_PORT are set), and
# rank 0 writes the outputs. output_dir must be on a file system every node sees.
#SBATCH --job-name=llfc-sft
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --time=04:00:00
set -euo pipefail
srun ./run_sft output_dir="$PWD/saves/run-$SLURM_JOB_ID" ddp_timeout=1800
