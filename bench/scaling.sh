#!/bin/bash
# scaling.sh - 1- vs 2-thread speed of cellcount-bench, with the host's
# delivered cores checked around every measurement.
#
# The development machines are 2 shared vCPUs that for minutes at a time
# deliver one core's worth of compute.  A 2-thread figure means something
# only when both cores were there, so each round runs bench/core_probe.c
# (AVX2 FMA throughput at 1 and 2 threads) before and after timing the
# configuration at 1 and 2 threads (order alternating between rounds), and
# the table keeps the rounds whose probes all said "two cores" (2-thread
# probe >= 1.85x the 1-thread probe).
#
# usage: bench/scaling.sh [--bench PATH] [--rounds N] [--configs "train-fpn1 ..."]
# configs: train-fpn1 train-counter infer-fpn1 infer-counter (as side_by_side.sh)
set -u
here=$(cd "$(dirname "$0")" && pwd)
BENCH=""
ROUNDS=3
CONFIGS="train-fpn1 train-counter infer-fpn1 infer-counter"
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) BENCH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "scaling.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BENCH" ]; then
    for c in ./bench/cellcount-bench "$here/cellcount-bench"; do
        [ -x "$c" ] && { BENCH=$c; break; }
    done
fi
[ -n "$BENCH" ] && [ -x "$BENCH" ] || { echo "scaling.sh: pass --bench PATH" >&2; exit 2; }
OUT=$(mktemp -d /tmp/scaling.XXXXXX)
PROBE=$OUT/core_probe
gcc -O2 -mavx2 -mfma -fopenmp "$here/core_probe.c" -o "$PROBE" || exit 1

args_of() {
    case "$1" in
    train-fpn1) echo "--model fpn --batch 2 --channels 1 --height 192 --width 256 --steps 4 --warmup 2" ;;
    train-counter) echo "--model counter --batch 5 --channels 1 --height 96 --width 128 --steps 8 --warmup 3" ;;
    infer-fpn1) echo "--model fpn --batch 2 --channels 1 --height 192 --width 256 --infer --steps 6 --warmup 2" ;;
    infer-counter) echo "--model counter --batch 5 --channels 1 --height 96 --width 128 --infer --steps 16 --warmup 3" ;;
    *) echo "scaling.sh: unknown config $1" >&2; exit 2 ;;
    esac
}
probe() {   # prints the 2-thread / 1-thread FMA throughput ratio
    local a b
    a=$(OMP_NUM_THREADS=1 "$PROBE" 0.4 | sed 's/.*gflops=//')
    b=$(OMP_NUM_THREADS=2 "$PROBE" 0.4 | sed 's/.*gflops=//')
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }'
}
ms() {      # CONFIG THREADS -> median ms
    # shellcheck disable=SC2046
    "$BENCH" $(args_of "$1") --threads "$2" --json 2>/dev/null | tail -n 1 |
        sed 's/.*"median_ms": *\([0-9.]*\).*/\1/'
}
RAW=$OUT/raw.txt
: > "$RAW"
echo "bench: $BENCH; rounds: $ROUNDS; raw: $RAW"
for round in $(seq 1 "$ROUNDS"); do
    for cfg in $CONFIGS; do
        p0=$(probe)
        if [ $((round % 2)) = 1 ]; then t1=$(ms "$cfg" 1); t2=$(ms "$cfg" 2)
        else t2=$(ms "$cfg" 2); t1=$(ms "$cfg" 1); fi
        p1=$(probe)
        echo "$cfg $round $p0 $p1 $t1 $t2" >> "$RAW"
        printf '  round %s %-14s probe %s/%s  1 thread %s ms  2 threads %s ms\n' \
            "$round" "$cfg" "$p0" "$p1" "$t1" "$t2"
    done
done
echo
echo "| config | rounds with 2 cores | 1 thread ms | 2 threads ms | speedup | all rounds' speedups |"
echo "|---|---|---|---|---|---|"
for cfg in $CONFIGS; do
    awk -v c="$cfg" '
        $1 == c { all = all sprintf("%s%.2f", all ? " " : "", $5 / $6)
                  if ($3 >= 1.85 && $4 >= 1.85) { n++; a[n] = $5; b[n] = $6 } }
        function med(x, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
                                        if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                      return k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2 }
        END { if (n) { m1 = med(a, n); m2 = med(b, n)
                       printf "| %s | %d | %.1f | %.1f | %.2f | %s |\n", c, n, m1, m2, m1 / m2, all }
              else printf "| %s | 0 | - | - | - | %s |\n", c, all }' "$RAW"
done
