#!/usr/bin/env bash
# Run every fuzz harness for SECONDS each (default 30) on its seed corpus.
# Usage: fuzz/run.sh FUZZBUILDDIR [SECONDS]
# Exit status 1 when a harness finds a crash, leak or undefined behaviour;
# the reproducer is left as FUZZBUILDDIR/crash-* (libFuzzer's naming).
set -uo pipefail
out=$(cd "$1" && pwd)
secs=${2:-30}
rc=0
for h in tiff ini bbbc runlog dataset checkpoint; do
    corpus=$out/corpus/$h
    mkdir -p "$corpus"
    echo "== fuzz_$h: ${secs}s"
    # -rss_limit_mb: the TIFF reader may legitimately allocate up to its
    # pixel limit; ASan adds its shadow on top.
    if ! (cd "$out" && OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
            LSAN_OPTIONS=suppressions=$(dirname "$0")/../tests/lsan.supp \
            ./fuzz_$h -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 \
            -print_final_stats=1 "$corpus" "$out/seeds/$h" 2>&1 | tail -n 25); then
        echo "== fuzz_$h: FINDING (see above)"
        rc=1
    fi
done
exit $rc
