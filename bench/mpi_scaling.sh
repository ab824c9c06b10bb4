#!/bin/bash
# mpi_scaling.sh - data-parallel step time on one machine (docs/CLUSTER.md).
# For the FPN (depth 4, width WIDTH, 256x192 images, global batch 4) and
# the VGG-11 counter (full width, input 1x96x128, 22.9 M parameters, global
# batch 8): np 1 x 1 thread, np 2 x 1 thread with the gradient reduction
# after backward and overlapped with it (run.overlap_allreduce), and
# 1 process x 2 threads.  Each run trains 2 epochs of STEPS steps; the step
# time is epoch 2's (warm: epoch 1 builds the kernels), and the reduction's
# time and bytes per step come from rank 0's log of epoch 2.  Then the
# reduction alone at the paper's sizes (FPN width 128: 7.1 M floats =
# 28 MB; the counter: 22.9 M floats = 92 MB), in one piece and in 2 MB
# buckets, both ranks in step.  Run from a build configured --with-mpi.
# Rounds interleave the configurations; compare them within a round.  The
# reduction time a rank measures includes waiting for the slower rank.
# usage: [FPN_MB=0.25] [CNT_MB=2] bench/mpi_scaling.sh [WIDTH [STEPS [ROUNDS [MODELS]]]]
#        (default 32 4 2 "fpn counter")
set -u
W=${1:-32}; STEPS=${2:-4}; ROUNDS=${3:-2}; MODELS=${4:-fpn counter}
# bucket sizes: the counter's default 2 MB; the FPN's slab at width 32 is
# 1.8 MB, one default bucket (nothing to overlap), so 0.25 MB (8 buckets)
FPN_MB=${FPN_MB:-0.25}; CNT_MB=${CNT_MB:-2}
cc=./cellcount
export OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo OMP_WAIT_POLICY=passive
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d /tmp/cc_mpibench_XXXXXX); trap 'rm -rf "$tmp"' EXIT
# 4 counts x 2 focus levels x 8 sites = 64 images, 51 for training
$cc simulate --out "$tmp/sim.h5" --counts 5,20,40,60 --focus 1,8 --sites 8 --stain 1 \
    --split 80/10/10 >/dev/null 2>&1 || { echo "simulate failed"; exit 1; }
FPN=(train-fpn --set fpn.depth=4 --set fpn.width="$W" --set fpn_train.batch=4
     --set fpn_train.epochs=2 --set fpn_train.max_steps="$STEPS" -d "$tmp/sim.h5"
     --set run.allreduce_bucket_mb="$FPN_MB")
CNT=(train-counter --set fpn.depth=4 --set fpn.width="$W" --fpn "$tmp/fpn0/fpn_last.h5"
     --set counter.arch=vgg11 --set counter_train.batch=8 --set counter_train.epochs=2
     --set counter_train.max_steps="$STEPS" --set counter.precise_bn=0 --set counter.ema=0
     --set counter.init_bias=data -d "$tmp/sim.h5" --set run.allreduce_bucket_mb="$CNT_MB")
# the counter's input masks come from an FPN: one step of training is enough
OMP_NUM_THREADS=1 $cc train-fpn --set fpn.depth=4 --set fpn.width="$W" --set fpn_train.epochs=1 \
    --set fpn_train.max_steps=1 -d "$tmp/sim.h5" -t 1 -o "$tmp/fpn0" 2>"$tmp/fpn0.log" ||
    { echo "FPN for the counter failed"; tail -3 "$tmp/fpn0.log"; exit 1; }
# run MODEL LABEL NP THREADS OVERLAP
run() {
    local model=$1 label=$2 np=$3 th=$4 ov=$5 out="$tmp/$1_$2"
    local args
    if [ "$model" = fpn ]; then args=("${FPN[@]}"); else args=("${CNT[@]}"); fi
    rm -rf "$out"
    OMP_NUM_THREADS=$th timeout 1200 mpirun --oversubscribe --bind-to none -np "$np" $cc \
        "${args[@]}" --set run.overlap_allreduce="$ov" -t "$th" -o "$out" 2>"$out.log" ||
        { echo "$model $label failed"; tail -3 "$out.log"; return; }
    # /metrics/seconds rows: train 1, val 1, train 2, val 2
    local secs
    secs=$(h5dump -d /metrics/seconds -y -w 0 "$out/run.h5" | sed -n '/DATA {/,/}/p' |
           tr -d 'DATA{} \n' | cut -d, -f3)
    local step comm after mb
    step=$(echo "$secs / $STEPS" | bc -l)
    printf "%-8s %-24s %6.3f s/step" "$model" "$label" "$step"
    # "... epoch 2: 2 ranks, N gradient allreduces (...), S s in them (A ms each, B ms after backward), M MB sent ..."
    local line
    line=$(grep "epoch 2: .* gradient allreduces" "$out.log" | tail -1)
    if [ -n "$line" ]; then
        comm=$(echo "$line" | sed 's/.*(\([0-9.]*\) ms each.*/\1/')
        after=$(echo "$line" | sed 's/.* \([0-9.]*\) ms after backward.*/\1/')
        mb=$(echo "$line" | sed 's/.* \([0-9.]*\) MB sent.*/\1/')
        printf "  reduction %7.1f ms/step (%4.1f%%), %7.1f ms after backward, %5.1f MB sent per rank" \
            "$comm" "$(echo "100 * $comm / 1000 / $step" | bc -l)" "$after" "$mb"
        case $line in *"in flight during"*)
            printf ", in flight during %s ms of backward" \
                "$(echo "$line" | sed 's/.*in flight during \([0-9.]*\) ms.*/\1/')";;
        esac
    fi
    echo
}
echo "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; FPN depth 4 width $W; $STEPS steps per epoch; buckets: FPN $FPN_MB MB, counter $CNT_MB MB"
for r in $(seq "$ROUNDS"); do
    for m in $MODELS; do
        echo "round $r $m (load $(cut -d' ' -f1-3 /proc/loadavg))"
        run "$m" np1x1thread 1 1 true
        run "$m" np2x1thread_after 2 1 false
        run "$m" np2x1thread_overlap 2 1 true
        run "$m" np1x2threads 1 2 true
    done
done
echo "reduction alone, np 2 (load $(cut -d' ' -f1-3 /proc/loadavg))"
for n in 7113236 22866562; do
    OMP_NUM_THREADS=1 timeout 300 mpirun --oversubscribe --bind-to none -np 2 tests/test_mpi_dist --bench $n 10
    OMP_NUM_THREADS=1 timeout 300 mpirun --oversubscribe --bind-to none -np 2 tests/test_mpi_dist --bench $n 10 500000
done
