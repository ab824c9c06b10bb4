#!/bin/bash
# contention.sh - cellcount-bench on a busy machine (issue 13, part 3).
#
# Runs the quickstart's counter size (--model counter --batch 32 --height 48
# --width 64, training) in three settings, interleaved per round, no pinning:
#   A  2 threads, nothing else started by this script ("idle")
#   B  2 threads beside one busy process (`while :; do :; done`)
#   C  1 thread  beside the same kind of busy process
# and prints each setting's median images/s over the rounds, per-round
# figures and the load average before/after.  The bar (issue 13): B >= C.
# Whatever else runs on the machine is not controlled: read the load figures.
# --busy N: N busy processes in B and C instead of one (the bar's case is
# N = 1; with more, the scheduler's fair share favours the larger team).
#
# usage: bench/contention.sh [--bench PATH] [--rounds N] [--steps S] [--warmup K]
#            [--busy N]
# Extra environment (e.g. OMP_WAIT_POLICY=active to compare with the
# default the bench sets itself) is passed through to the benchmark.
set -u
here=$(cd "$(dirname "$0")" && pwd)
BENCH=""
ROUNDS=3
STEPS=8
WARMUP=2
NBUSY=1
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) BENCH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --busy) NBUSY=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "contention.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BENCH" ]; then
    for c in ./bench/cellcount-bench "$here/cellcount-bench"; do
        [ -x "$c" ] && { BENCH=$c; break; }
    done
fi
[ -n "$BENCH" ] && [ -x "$BENCH" ] || { echo "contention.sh: pass --bench PATH" >&2; exit 2; }

case "$NBUSY" in ''|*[!0-9]*|0) echo "contention.sh: --busy needs a count >= 1" >&2; exit 2 ;; esac
BUSY=""
start_busy() {
    for _ in $(seq 1 "$NBUSY"); do bash -c 'while :; do :; done' & BUSY="$BUSY $!"; done
}
stop_busy() { [ -n "$BUSY" ] && kill $BUSY 2>/dev/null; wait $BUSY 2>/dev/null; BUSY=""; }
trap stop_busy EXIT INT TERM

# images/s of one run (the "N images/s" figure of the summary line)
run_one() {
    "$BENCH" --model counter --batch 32 --height 48 --width 64 --threads "$1" \
        --steps "$STEPS" --warmup "$WARMUP" 2>&1 |
        sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' | head -1
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A res
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)   nproc: $(nproc)   busy processes in B, C: $NBUSY"
for r in $(seq 1 "$ROUNDS"); do
    # rotate the order each round so a drift in the background load does
    # not favour one setting
    case $((r % 3)) in
    1) order="A B C" ;; 2) order="B C A" ;; 0) order="C A B" ;;
    esac
    line="round $r:"
    for s in $order; do
        case $s in
        A) v=$(run_one 2) ;;
        B) start_busy; v=$(run_one 2); stop_busy ;;
        C) start_busy; v=$(run_one 1); stop_busy ;;
        esac
        res[$s]="${res[$s]:-} ${v:-nan}"
        line="$line $s=${v:-failed}"
    done
    echo "$line   (load $(cut -d' ' -f1 /proc/loadavg))"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
mA=$(echo ${res[A]} | tr ' ' '\n' | grep -v nan | median)
mB=$(echo ${res[B]} | tr ' ' '\n' | grep -v nan | median)
mC=$(echo ${res[C]} | tr ' ' '\n' | grep -v nan | median)
printf '| setting | median images/s | rounds |\n|---|---|---|\n'
printf '| A: 2 threads, no busy process | %s | %s |\n' "$mA" "${res[A]# }"
printf '| B: 2 threads beside %s busy process(es) | %s | %s |\n' "$NBUSY" "$mB" "${res[B]# }"
printf '| C: 1 thread beside %s busy process(es) | %s | %s |\n' "$NBUSY" "$mC" "${res[C]# }"
awk -v b="$mB" -v c="$mC" 'BEGIN { if (c > 0 && b != "n/a") printf "B / C = %.2f (bar: >= 1)\n", b / c }'
