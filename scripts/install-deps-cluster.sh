#!/usr/bin/env bash
# Install the Debian 12 packages for cellcount's cluster features (issue 14):
# Open MPI 4.1 (./configure --with-mpi; mpirun) and Slurm 22.05 (the Slurm
# test runs its own slurmctld + slurmd).  Idempotent; needs root (or sudo).
# Usage: scripts/install-deps-cluster.sh
set -euo pipefail
pkgs=(libopenmpi-dev openmpi-bin slurm-wlm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps-cluster: all ${#pkgs[@]} packages present"
    exit 0
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps-cluster: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
