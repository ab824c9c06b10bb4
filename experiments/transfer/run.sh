#!/bin/bash
# Transfer to real images (docs/RESULTS.md, "Real images"): quickstart-sized
# models trained on simulated w1 / w2 images only, and the same models trained
# on the real subset's own training split, each with 3 seeds; every model then
# counts the real subset (the sim-trained ones all 384 images of their stain,
# the real-trained ones only the test split they never saw).
#
#   experiments/transfer/run.sh REAL.h5 OUT [PARALLEL]
#
# REAL.h5: a cellcount data set of real BBBC005 images with both stains (e.g.
# ../shared/data/bbbc005-real/real_subset.h5; with the full BBBC005 imported by
# `cellcount import --stain all` the same commands score the whole set).
# OUT: a directory for the runs; PARALLEL: jobs at a time (default 1; each
# job runs with THREADS threads, default 1).  JOBS (environment): the jobs to
# run, default every one of sim_w{1,2}_s{1,2,3} real_w{1,2}_s{1,2,3}; a job
# named sim_wSaug_sN trains like sim_wS_sN with photometric augmentations.
# CELLCOUNT: the binary (default: cellcount on PATH).  SETS: extra --set
# overrides for every training run (smoke tests: counter_train.epochs=2).
# Each job writes OUT/JOB/log.txt and OUT/JOB/eval_real.txt; summarise with
# experiments/transfer/summary.sh OUT.
set -euo pipefail
real=${1:?usage: run.sh REAL.h5 OUT [PARALLEL]}
out=${2:?usage: run.sh REAL.h5 OUT [PARALLEL]}
par=${3:-1}
cc=${CELLCOUNT:-cellcount}
threads=${THREADS:-1}
here=$(cd "$(dirname "$0")/.." && pwd)   # experiments/
mkdir -p "$out"
for s in 1 2; do
    # the models' input size; splits, counts and masks kept
    [ -e "$out/real_w$s.h5" ] ||
        "$cc" import --from "$real" --stain "$s" --size 128x96 --out "$out/real_w$s.h5"
done
jobs=${JOBS:-"sim_w2_s1 sim_w2_s2 sim_w2_s3 sim_w1_s1 sim_w1_s2 sim_w1_s3 real_w2_s1 real_w2_s2 real_w2_s3 real_w1_s1 real_w1_s2 real_w1_s3"}
run_job() {
    local job=$1 d="$out/$1"
    local kind=${job%%_*} rest=${job#*_}
    local stain=${rest:1:1} seed=${job##*_s}
    local aug=()
    case $rest in w?aug_*) aug=(--set data.aug_gain=0.15 --set data.aug_gamma=0.15 --set data.aug_blur=1 --set data.aug_noise=0.01) ;; esac
    mkdir -p "$d"
    {
        echo "== $job: $(date -u +%FT%TZ)"
        local t0=$(date +%s)
        if [ "$kind" = sim ]; then
            "$cc" quickstart --out "$d" --stain "$stain" --threads "$threads" \
                --set run.seed="$seed" "${aug[@]}" "${sets[@]}" &&
            "$cc" evaluate -o "$d/run" -t "$threads" --on "$out/real_w$stain.h5" \
                > "$d/eval_real.txt"
        else
            local cfg="$here/quickstart.ini"
            # no simulated calibration set for a model of real images: its validation split
            local args=(-d "$out/real_w$stain.h5" -o "$d/run" -t "$threads" --set run.seed="$seed"
                        --set counter.calibrate=val --set counter.calibrate_on= "${sets[@]}")
            "$cc" train-fpn "$cfg" "${args[@]}" &&
            "$cc" train-counter "$cfg" "${args[@]}" &&
            "$cc" evaluate "$cfg" "${args[@]}" > "$d/eval_real.txt"
        fi &&
        echo "== $job done in $(( $(date +%s) - t0 )) s"
    } > "$d/log.txt" 2>&1 || { echo "$job FAILED (see $d/log.txt)"; return 1; }
    echo "$job done"
}
export -f run_job
export out cc threads here SETS
fail=0
printf '%s\n' $jobs | xargs -P "$par" -I{} bash -c 'sets=(); for kv in ${SETS:-}; do sets+=(--set "$kv"); done; run_job {}' || fail=1
exit $fail
