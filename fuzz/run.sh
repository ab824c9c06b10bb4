#!/usr/bin/env bash
# Run every fuzz harness on its seed corpus and its regression inputs.
# Usage: fuzz/run.sh FUZZBUILDDIR            CI mode: reproducible
#        fuzz/run.sh FUZZBUILDDIR SECONDS    exploration: random seed
# CI mode runs each harness for a fixed number of inputs from a fixed seed
# (CC_FUZZ_SEED, default 1) on a fresh corpus, so it visits the same inputs
# on every machine: a run that passes here passes in CI, and a finding
# reproduces. The input counts take about 20-30 s each on one Zen 5 core;
# a time cap of 180 s per harness only shortens a run (a prefix of the same
# sequence), never changes it. Exploration mode runs each harness for
# SECONDS from a random seed and keeps its corpus between runs.
# A finding's input belongs in fuzz/regress/<harness>/ once fixed: every
# run replays those inputs first.
# Exit status 1 when a harness finds a crash, leak or undefined behaviour;
# the reproducer is left as FUZZBUILDDIR/crash-* (libFuzzer's naming).
set -uo pipefail
out=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${2:-}
rc=0
for h in tiff ini bbbc runlog dataset checkpoint; do
    case $h in
    tiff) runs=190000 ;;
    ini) runs=350000 ;;
    bbbc) runs=2000000 ;;
    runlog) runs=6000 ;;
    dataset) runs=6500 ;;
    checkpoint) runs=3500 ;;
    esac
    if [ -n "$secs" ]; then
        corpus=$out/corpus/$h
        mode=(-max_total_time="$secs")
        echo "== fuzz_$h: ${secs}s, random seed"
    else
        corpus=$out/corpus-ci/$h
        rm -rf "$corpus"
        mode=(-seed="${CC_FUZZ_SEED:-1}" -runs="$runs" -max_total_time=180)
        echo "== fuzz_$h: $runs inputs, seed ${CC_FUZZ_SEED:-1}"
    fi
    mkdir -p "$corpus"
    dirs=("$corpus" "$out/seeds/$h")
    [ -d "$src/fuzz/regress/$h" ] && dirs+=("$src/fuzz/regress/$h")
    # -rss_limit_mb: the TIFF reader may legitimately allocate up to its
    # pixel limit; ASan adds its shadow on top.
    if ! (cd "$out" && OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
            LSAN_OPTIONS=suppressions=$src/tests/lsan.supp \
            ./fuzz_$h "${mode[@]}" -rss_limit_mb=4096 -max_len=65536 \
            -print_final_stats=1 "${dirs[@]}" 2>&1 | tail -n 25); then
        echo "== fuzz_$h: FINDING (see above)"
        rc=1
    fi
done
exit $rc
