#!/usr/bin/env bash
# Install the Debian 12 packages cellcount needs to build, test and run.
# Idempotent; needs root (or sudo).  Usage: scripts/install-deps.sh
# (`--only NAME PKG...` installs just those packages under NAME's label: how
# scripts/install-deps-cluster.sh reuses this script.)
set -euo pipefail
name=install-deps
if [ "${1:-}" = --only ]; then
    name=$2
    shift 2
    pkgs=("$@")
else
pkgs=(build-essential autoconf automake libtool pkg-config
      libdnnl-dev libhdf5-dev hdf5-tools libtiff-dev libpng-dev check gnuplot-nox
      protobuf-compiler   # protoc: tests/test_export decodes our TensorBoard files
      clang libclang-rt-14-dev libomp-dev)   # the last three: `make fuzz`
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "$name: all ${#pkgs[@]} packages present"
    exit 0
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "$name: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
