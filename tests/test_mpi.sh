#!/usr/bin/env bash
# test_mpi.sh - data-parallel training under mpirun on localhost (issue 14).
# Run by `make check` from the build directory.  Prints SKIP (exit 77)
# unless this build was configured --with-mpi and mpirun is on PATH.
#
# Cases: the collectives at np 2 and 3 (tests/test_mpi_dist); np 1 equals
# the non-MPI path bit for bit; np 2 twice is bit-identical; the per-epoch
# weight comparison passes, and stops a job whose ranks diverge; np 2 and
# np 3 agree with np 1 at the same global batch within a stated tolerance;
# a checkpoint written at np 2 resumes at np 1; killing one rank, or one
# rank's error, ends the job non-zero within seconds; the counter's
# >= 2 images per rank rule; synchronised BN (run.sync_bn) against np 1;
# the gradient reduction overlapped with backward (run.overlap_allreduce,
# several bucket sizes) bit for bit the one after backward, at np 2 and 3,
# with sync BN, FPN and counter.  CC_PLAIN_CELLCOUNT: a cellcount built
# without MPI to compare with (default: this build started without a
# launcher).
set -u
cc=./cellcount
if ! "$cc" --version 2>/dev/null | grep -q "MPI yes"; then
    echo "SKIP: cellcount was built without MPI (./configure --with-mpi)"; exit 77
fi
if ! command -v mpirun >/dev/null; then
    echo "SKIP: mpirun not found (Debian: openmpi-bin)"; exit 77
fi
plain=${CC_PLAIN_CELLCOUNT:-$cc}
export OMP_NUM_THREADS=1 OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { local np=$1; shift; timeout 180 mpirun --oversubscribe --bind-to none -np "$np" "$@"; }
tmp=$(mktemp -d /tmp/cc_mpi_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

run 2 tests/test_mpi_dist && ok "collectives at np 2" || bad "collectives at np 2"
run 3 tests/test_mpi_dist && ok "collectives at np 3" || bad "collectives at np 3"

"$cc" simulate --out "$tmp/sim.h5" --size 64x64 --counts 2,10,25,40 --focus 1,8 --sites 5 \
    --image-size 174x130 --stain 1 --split 60/20/20 >/dev/null 2>&1 || { echo "FAIL: simulate"; exit 1; }
S=(--set fpn.depth=2 --set fpn.width=4 --set fpn_train.batch=4 --set fpn_train.lr=3e-3 -t 1
   -d "$tmp/sim.h5")
# fpn OUT EPOCHS NP|plain [ARGS...]: train the FPN into $tmp/OUT.
fpn() {
    local out=$1 ep=$2 np=$3; shift 3
    local a=(train-fpn "${S[@]}" --set fpn_train.epochs="$ep" -o "$tmp/$out" "$@")
    if [ "$np" = plain ]; then "$plain" "${a[@]}"; else run "$np" "$cc" "${a[@]}"; fi
}
loss() { h5dump -d /metrics/loss -y -w 0 "$tmp/$1/run.h5" | sed -n '/DATA {/,/}/p' | tr -d 'DATA{} \n'; }
same() { cmp -s "$tmp/$1/fpn_last.h5" "$tmp/$2/fpn_last.h5"; }

fpn plain 2 plain 2>"$tmp/plain.log" || bad "plain training: $(tail -1 "$tmp/plain.log")"
fpn np1 2 1 2>"$tmp/np1.log" || bad "np 1 training: $(tail -1 "$tmp/np1.log")"
same plain np1 && ok "np 1 checkpoint bit-identical to the non-MPI run" ||
    bad "np 1 differs from the non-MPI run: $(loss plain) vs $(loss np1)"
fpn np2a 2 2 2>"$tmp/np2a.log" || bad "np 2 training: $(tail -1 "$tmp/np2a.log")"
fpn np2b 2 2 2>"$tmp/np2b.log" || bad "np 2 training (again): $(tail -1 "$tmp/np2b.log")"
same np2a np2b && ok "np 2 twice bit-identical" || bad "np 2 runs differ: $(loss np2a) vs $(loss np2b)"
# The gradient reduction overlapped with backward (run.overlap_allreduce,
# the default, above) gives the bits of the reduction after backward, and
# so do buckets of 250 floats (several per slab, started while backward
# runs; the default 2 MB holds this FPN's whole slab in one).
fpn np2off 2 2 --set run.overlap_allreduce=false 2>"$tmp/np2off.log" ||
    bad "np 2 without overlap: $(tail -1 "$tmp/np2off.log")"
fpn np2small 2 2 --set run.allreduce_bucket_mb=0.001 2>"$tmp/np2small.log" ||
    bad "np 2 with small buckets: $(tail -1 "$tmp/np2small.log")"
same np2a np2off && same np2a np2small && ok "np 2: overlapped (2 MB and 1 kB buckets) = after backward, bit for bit" ||
    bad "overlap changes np 2: $(loss np2a) / $(loss np2off) / $(loss np2small)"
grep -q "gradient allreduces (overlapped, 0.001 MB buckets, in flight during" "$tmp/np2small.log" &&
    grep -q "gradient allreduces (after backward)" "$tmp/np2off.log" &&
    ok "the reduction's log names the path" || bad "reduction log: $(grep allreduces "$tmp/np2small.log")"
h5dump -a mpi_ranks "$tmp/np2a/run.h5" 2>/dev/null | grep -q '"2"' && ok "run.h5 records 2 ranks" ||
    bad "run.h5 has no mpi_ranks = 2"
# The weight hash is compared every epoch (a mismatch stops the job): it
# passed above; here rank 1 perturbs its weights and the job must stop.
CC_DIST_TEST_DIVERGE=1 fpn div 1 2 2>"$tmp/div.log" && bad "diverged ranks not detected" ||
    { grep -q "weights of rank 1 differ" "$tmp/div.log" && ok "diverged ranks stop the job" ||
      bad "divergence message missing: $(tail -2 "$tmp/div.log")"; }

# np 2 / np 3 vs np 1 at the same global batch (4): the gradient is the
# same global mean, but BatchNorm normalises each rank's slice (2 or 1-2
# images) with its own statistics, so the runs differ by design.  Stated
# tolerance: every train/val loss within 0.05 + 10% of np 1's.
fpn np3 2 3 2>"$tmp/np3.log" || bad "np 3 training: $(tail -1 "$tmp/np3.log")"
fpn np3off 2 3 --set run.overlap_allreduce=false 2>"$tmp/np3off.log" ||
    bad "np 3 without overlap: $(tail -1 "$tmp/np3off.log")"
fpn np3small 2 3 --set run.allreduce_bucket_mb=0.001 2>"$tmp/np3small.log" ||
    bad "np 3 with small buckets: $(tail -1 "$tmp/np3small.log")"
same np3 np3off && same np3 np3small && ok "np 3: overlapped = after backward, bit for bit" ||
    bad "overlap changes np 3: $(loss np3) / $(loss np3off) / $(loss np3small)"
for r in np2a np3; do
    echo "$r losses $(loss $r), np 1: $(loss np1)"
    awk -v a="$(loss np1)" -v b="$(loss $r)" 'BEGIN {
        n = split(a, x, ","); m = split(b, y, ",");
        if (n != 4 || m != 4) exit 1;
        for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; t = x[i] < 0 ? -x[i] : x[i];
                                   if (d > 0.05 + 0.1 * t) exit 1 }
        exit 0 }' && ok "$r within tolerance of np 1" || bad "$r vs np 1"
done

# Synchronised BN (run.sync_bn = true): np 2 normalises with the statistics
# of the global batch, as np 1 does, so its train losses track np 1's far
# closer than per-rank BN's.  Stated tolerance (measured: 1e-4 and 2e-4 vs
# per-rank BN's 1.2e-2 and 8e-3): each train loss within 2e-3 of np 1's, the
# largest difference below per-rank BN's, every loss within the tolerance
# above.  (Validation losses run on running statistics after Adam steps that
# amplify float-rounding differences: measured 9e-3 at epoch 2.)
fpn sync2 2 2 --set run.sync_bn=true 2>"$tmp/sync2.log" || bad "np 2 sync BN: $(tail -1 "$tmp/sync2.log")"
echo "sync2 losses $(loss sync2), per-rank np 2 $(loss np2a), np 1: $(loss np1)"
awk -v a="$(loss np1)" -v b="$(loss sync2)" -v c="$(loss np2a)" 'BEGIN {
    n = split(a, x, ","); m = split(b, y, ","); k = split(c, z, ",");
    if (n != 4 || m != 4 || k != 4) exit 1;
    ms = 0; mp = 0;
    for (i = 1; i <= n; i += 2) { d = x[i] - y[i]; if (d < 0) d = -d; e = x[i] - z[i]; if (e < 0) e = -e;
                                  if (d > 2e-3) exit 1; if (d > ms) ms = d; if (e > mp) mp = e }
    for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; t = x[i] < 0 ? -x[i] : x[i];
                               if (d > 0.05 + 0.1 * t) exit 1 }
    exit !(ms < mp) }' && ok "np 2 sync BN within 2e-3 of np 1 (train), closer than per-rank BN" ||
    bad "np 2 sync BN vs np 1"
run 2 "$cc" train-counter "${S[@]}" --set counter_train.batch=3 --set counter.width_div=16 \
    --set counter_train.epochs=1 --set counter.init_bias=data --set run.sync_bn=true \
    -o "$tmp/sync2" 2>"$tmp/cnt3.log" && ok "counter batch 3 at np 2 trains with sync BN" ||
    bad "counter sync BN at np 2: $(tail -2 "$tmp/cnt3.log")"
# Sync BN's collectives run between the buckets' (separate communicators):
# overlapped in small buckets = after backward, bit for bit, FPN and counter.
fpn sync2off 2 2 --set run.sync_bn=true --set run.overlap_allreduce=false 2>"$tmp/sync2off.log" ||
    bad "np 2 sync BN without overlap: $(tail -1 "$tmp/sync2off.log")"
fpn sync2small 2 2 --set run.sync_bn=true --set run.allreduce_bucket_mb=0.001 2>"$tmp/sync2small.log" ||
    bad "np 2 sync BN, small buckets: $(tail -1 "$tmp/sync2small.log")"
same sync2 sync2off && same sync2 sync2small && ok "np 2 sync BN: overlapped = after backward, bit for bit" ||
    bad "overlap changes np 2 sync BN: $(loss sync2) / $(loss sync2off) / $(loss sync2small)"
# fp32 results do not depend on the thread count (tests/test_threads.c), so
# 2 ranks x 2 threads give the bits of 2 ranks x 1 thread, sync BN included
# (width 16: the stem's weight gradient runs on both threads, in pieces).
fpn thr1 2 2 --set fpn.width=16 --set run.sync_bn=true 2>"$tmp/thr1.log" ||
    bad "np 2 x 1 thread: $(tail -1 "$tmp/thr1.log")"
fpn thr2 2 2 --set fpn.width=16 --set run.sync_bn=true -t 2 2>"$tmp/thr2.log" ||
    bad "np 2 x 2 threads: $(tail -1 "$tmp/thr2.log")"
same thr1 thr2 && ok "np 2 x 2 threads = np 2 x 1 thread, bit for bit" ||
    bad "threads change np 2: $(loss thr1) vs $(loss thr2)"
# counter.finetune_fpn = true: two stores (the FPN's slab, then the counter's)
for ft in false true; do
    for o in "true 0.01" "false 2"; do
        set -- $o
        cp -r "$tmp/np2a" "$tmp/cov_$ft$1"    # the counter starts from a trained FPN
        run 2 "$cc" train-counter "${S[@]}" --set counter_train.batch=4 --set counter.width_div=16 \
            --set counter_train.epochs=1 --set counter_train.max_steps=3 --set counter.init_bias=data \
            --set run.sync_bn=true --set counter.finetune_fpn=$ft --set counter.precise_bn=0 \
            --set counter.ema=0 --set counter.freeze_bn=0 --set run.overlap_allreduce=$1 \
            --set run.allreduce_bucket_mb=$2 -o "$tmp/cov_$ft$1" 2>"$tmp/cov_$ft$1.log" ||
            bad "counter at np 2, finetune_fpn $ft, overlap $1: $(tail -2 "$tmp/cov_$ft$1.log")"
    done
    cmp -s "$tmp/cov_${ft}true/counter_last.h5" "$tmp/cov_${ft}false/counter_last.h5" &&
        { [ $ft = false ] || cmp -s "$tmp/cov_${ft}true/counter_fpn_last.h5" "$tmp/cov_${ft}false/counter_fpn_last.h5"; } &&
        ok "counter np 2 (finetune_fpn $ft): overlapped (10 kB buckets) = after backward, bit for bit" ||
        bad "overlap changes the counter at np 2 (finetune_fpn $ft)"
done

# A checkpoint written at np 2 resumes at np 1 (and at np 3).
fpn res 1 2 2>/dev/null || bad "np 2 one epoch"
cp -r "$tmp/res" "$tmp/res3"
fpn res 2 1 --resume 2>"$tmp/res.log" && grep -q "resuming fpn" "$tmp/res.log" &&
    [ "$(loss res | tr ',' '\n' | grep -c .)" = 4 ] && ok "np 2 checkpoint resumed at np 1" ||
    bad "resume at np 1: $(tail -2 "$tmp/res.log")"
fpn res3 2 3 --resume 2>"$tmp/res3.log" && grep -q "3 ranks resume fpn after epoch 1" "$tmp/res3.log" &&
    ok "np 2 checkpoint resumed at np 3" || bad "resume at np 3: $(tail -2 "$tmp/res3.log")"

# One rank's error (rank 0 cannot write the run directory; rank 1 waits in
# a broadcast) ends the job with the message, non-zero, within seconds.
t0=$(date +%s)
fpn err 1 2 --set run.out_dir=/proc/cc-cannot-write 2>"$tmp/err.log"; rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -lt 30 ] && grep -q "cc-cannot-write" "$tmp/err.log" &&
    ok "one rank's error ends the job (rc $rc, ${dt}s)" || bad "rank error: rc $rc after ${dt}s: $(head -3 "$tmp/err.log")"

# Killing one rank mid-training ends the job non-zero within seconds.
# 1000 epochs: on an idle machine 50 took 2 s, ending before the 3 s wait below.
fpn kill 1000 2 2>"$tmp/kill.log" &
mp=$!
ranks() {  # PIDs of the job's ranks (from /proc: procps may be missing)
    local f
    for f in /proc/[0-9]*/cmdline; do
        { tr '\0' ' ' < "$f"; } 2>/dev/null | grep -q "^$cc train-fpn .*$tmp/kill" && { f=${f#/proc/}; echo "${f%/cmdline}"; }
    done
}
for _ in $(seq 150); do [ "$(ranks | wc -l)" = 2 ] && break; sleep 0.2; done
sleep 3     # into the training loop
victim=$(ranks | tail -1)
t0=$(date +%s)
kill -9 "$victim" 2>/dev/null
wait "$mp"; rc=$?
dt=$(( $(date +%s) - t0 ))
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -lt 30 ] &&
    ok "killing rank pid $victim ends the job (rc $rc, ${dt}s)" || bad "kill: rc $rc after ${dt}s (victim '$victim')"

# The counter needs >= 2 images per rank for BatchNorm: a clear error.
run 2 "$cc" train-counter "${S[@]}" --set counter_train.batch=3 --set counter.width_div=16 \
    --set counter_train.epochs=1 -o "$tmp/np2a" 2>"$tmp/cnt.log" && bad "counter batch 3 at np 2 accepted" ||
    { grep -q "needs at least 2" "$tmp/cnt.log" && ok "counter batch 3 at np 2: clear error" ||
      bad "counter error: $(tail -2 "$tmp/cnt.log")"; }
run 2 "$cc" train-counter "${S[@]}" --set counter_train.batch=4 --set counter.width_div=16 \
    --set counter_train.epochs=1 --set counter.init_bias=data -o "$tmp/np2a" 2>"$tmp/cnt2.log" &&
    ok "counter trains at np 2" || bad "counter at np 2: $(tail -2 "$tmp/cnt2.log")"
exit $fail
