#!/bin/bash
# mpi_scaling.sh - data-parallel step time on one machine (docs/CLUSTER.md):
# train-fpn at a fixed global batch as np 1 x 1 thread, np 2 x 1 thread and
# 1 process x 2 threads, side by side, plus the gradient allreduce alone at
# the paper's sizes (FPN width 128: 6.9 M floats = 27 MB; VGG-11 counter at
# 1x96x128: 22 M floats = 88 MB).  Run from a build configured --with-mpi.
# Rounds interleave the three configurations; compare them within a round.
# The allreduce time a rank measures includes waiting for the slower rank.
# usage: bench/mpi_scaling.sh [WIDTH [STEPS [ROUNDS]]]   (default 32 4 3)
set -u
W=${1:-32}; STEPS=${2:-4}; ROUNDS=${3:-3}
cc=./cellcount
export OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo OMP_WAIT_POLICY=passive
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d /tmp/cc_mpibench_XXXXXX); trap 'rm -rf "$tmp"' EXIT
$cc simulate --out "$tmp/sim.h5" --counts 5,20,40 --focus 1,8 --sites 4 --stain 1 \
    --split 80/10/10 >/dev/null 2>&1 || exit 1
S=(--set fpn.depth=4 --set fpn.width="$W" --set fpn_train.batch=4 --set fpn_train.epochs=1
   --set fpn_train.max_steps="$STEPS" -d "$tmp/sim.h5")
run() {  # label np threads
    local t0 t1
    t0=$(date +%s.%N)
    OMP_NUM_THREADS=$3 timeout 900 mpirun --oversubscribe --bind-to none -np "$2" $cc train-fpn \
        "${S[@]}" -t "$3" -o "$tmp/$1" 2>"$tmp/$1.log" || { echo "$1 failed"; tail -3 "$tmp/$1.log"; }
    t1=$(date +%s.%N)
    local secs
    secs=$(h5dump -d /metrics/seconds -y -w 0 "$tmp/$1/run.h5" | sed -n '/DATA {/,/}/p' | tr -d 'DATA{} \n' | cut -d, -f1)
    printf "%-22s train epoch (%d steps of global batch 4): %6.2f s = %5.2f s/step; wall %5.1f s\n" \
        "$1" "$STEPS" "$secs" "$(echo "$secs / $STEPS" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
    grep "allreduces" "$tmp/$1.log" | sed 's/^/    /'
}
echo "FPN depth 4 width $W, 256x192 images, global batch 4, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    echo "round $r (load $(cut -d' ' -f1 /proc/loadavg))"
    run np1x1thread 1 1
    run np2x1thread 2 1
    run np1x2threads 1 2
done
for n in 6900000 22000000; do
    OMP_NUM_THREADS=1 timeout 300 mpirun --oversubscribe --bind-to none -np 2 tests/test_mpi_dist --bench $n 10
done
