#!/usr/bin/env bash
# Install the Debian 12 packages for cellcount's cluster features (issue 14):
# Open MPI 4.1 (./configure --with-mpi; mpirun) and Slurm 22.05 (the Slurm
# test runs its own slurmctld + slurmd).  Idempotent; needs root (or sudo).
# Usage: scripts/install-deps-cluster.sh
set -euo pipefail
exec "$(dirname "$0")/install-deps.sh" --only install-deps-cluster \
    libopenmpi-dev openmpi-bin slurm-wlm
