#!/bin/bash
# side_by_side.sh - time cellcount-bench and the PyTorch peer
# (shared/bench/torch_ref.py) on the same configurations, interleaved
# A B A B ..., and print both medians and the ratio ours/torch.
#
# Installs nothing.  Needs Debian's torch for /usr/bin/python3:
#     apt-get install -y python3-torch
# and, for a fair counter comparison (Debian's torch runs nn.Linear on the
# reference BLAS), OpenBLAS unpacked outside the system:
#     cd /tmp && apt-get download libopenblas0-openmp && \
#         dpkg -x libopenblas0-openmp_*.deb /tmp/obl
# (found at $OBL, default /tmp/obl/usr/lib/x86_64-linux-gnu/openblas-openmp,
# and put on torch's LD_LIBRARY_PATH only).
#
# usage: bench/side_by_side.sh [--bench PATH] [--torch-ref PATH] [--rounds N]
#            [--threads "1 2"] [--configs "train-fpn1 train-fpn3 train-counter
#            infer-fpn1 infer-counter"] [--quick] [--out DIR] [--also PATH]
#            [--precision fp32|bf16]
# Each round runs every configuration once with each program (ours first in
# odd rounds, torch first in even ones); a program's figure for a round is
# its median ms/step over --steps timed steps after --warmup untimed ones;
# the table reports the median over rounds.  Raw JSON lines go to DIR.
# --precision bf16 runs ours with --precision bf16 and the peer under
# torch.autocast(bfloat16) (its --bf16); the "before" build gets the same flag.
# --also PATH adds a third program, another cellcount-bench build (e.g. the
# engine before a change), interleaved the same way ("before" column).
set -u

here=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-}
TORCH_REF=${TORCH_REF:-}
ROUNDS=3
THREADS="1"
CONFIGS="train-fpn1 train-fpn3 train-counter infer-fpn1 infer-counter"
QUICK=0
OUT=""
ALSO=""
OBL=${OBL:-/tmp/obl/usr/lib/x86_64-linux-gnu/openblas-openmp}
PY=${PY:-/usr/bin/python3}
PRECISION=fp32

while [ $# -gt 0 ]; do
    case "$1" in
    --bench) BENCH=$2; shift 2 ;;
    --torch-ref) TORCH_REF=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --also) ALSO=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "side_by_side.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

# Our benchmark: an explicit path, else the usual out-of-tree build dirs.
if [ -z "$BENCH" ]; then
    for c in ./bench/cellcount-bench /tmp/build-bench/bench/cellcount-bench \
             "$here/cellcount-bench"; do
        [ -x "$c" ] && { BENCH=$c; break; }
    done
fi
if [ -z "$BENCH" ] || [ ! -x "$BENCH" ]; then
    echo "side_by_side.sh: cellcount-bench not found; build it (make bench/cellcount-bench" \
         "in your build dir) and pass --bench PATH" >&2
    exit 2
fi
if [ -z "$TORCH_REF" ]; then
    for c in "$here/../../shared/bench/torch_ref.py" "$here/../shared/bench/torch_ref.py" \
             /work/shared/bench/torch_ref.py; do
        [ -f "$c" ] && { TORCH_REF=$c; break; }
    done
fi
if [ -z "$TORCH_REF" ] || [ ! -f "$TORCH_REF" ]; then
    echo "side_by_side.sh: torch_ref.py not found; pass --torch-ref PATH" >&2
    exit 2
fi
if [ ! -x "$PY" ] || ! "$PY" -c 'import torch' 2>/dev/null; then
    cat >&2 <<EOF
side_by_side.sh: $PY cannot import torch.  Install Debian's torch (as root):
    apt-get -o DPkg::Lock::Timeout=300 install -y python3-torch
and optionally OpenBLAS for nn.Linear (see the top of this script).
EOF
    exit 2
fi
TORCH_ENV=()
BLAS="Debian default BLAS (reference)"
if [ -f "$OBL/libblas.so.3" ]; then
    TORCH_ENV=(env "LD_LIBRARY_PATH=$OBL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    BLAS="OpenBLAS from $OBL"
else
    echo "side_by_side.sh: note: no OpenBLAS at $OBL: torch's nn.Linear uses the reference BLAS" >&2
fi

case "$PRECISION" in
fp32) OURS_PREC=(); TORCH_PREC=() ;;
bf16) OURS_PREC=(--precision bf16); TORCH_PREC=(--bf16) ;;
*) echo "side_by_side.sh: --precision must be fp32 or bf16, not '$PRECISION'" >&2; exit 2 ;;
esac

[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/side_by_side.XXXXXX)
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: > "$RAW"

# config -> "common args|steps|warmup"
config_args() {
    local s
    case "$1" in
    train-fpn1) s="--model fpn --batch 2 --channels 1 --height 192 --width 256|5|2" ;;
    train-fpn3) s="--model fpn --batch 2 --channels 3 --height 192 --width 256|5|2" ;;
    train-counter) s="--model counter --batch 5 --channels 1 --height 96 --width 128|10|3" ;;
    infer-fpn1) s="--model fpn --batch 2 --channels 1 --height 192 --width 256 --infer|8|2" ;;
    infer-fpn3) s="--model fpn --batch 2 --channels 3 --height 192 --width 256 --infer|8|2" ;;
    infer-counter) s="--model counter --batch 5 --channels 1 --height 96 --width 128 --infer|20|3" ;;
    *) return 1 ;;
    esac
    echo "$s"
}

# run PROGRAM CONFIG THREADS ROUND
run_one() {
    local prog=$1 cfg=$2 thr=$3 round=$4 spec args steps warm load line
    spec=$(config_args "$cfg") || { echo "unknown config $cfg" >&2; exit 2; }
    args=${spec%%|*}; steps=${spec#*|}; warm=${steps#*|}; steps=${steps%%|*}
    # at least 2 warm-up steps: the first builds primitives, the second coalesces the arena
    [ "$QUICK" = 1 ] && steps=$(( (steps + 1) / 2 )) && warm=$(( warm > 2 ? warm - 1 : warm ))
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$prog" = ours ] || [ "$prog" = before ]; then
        local exe=$BENCH
        [ "$prog" = before ] && exe=$ALSO
        # shellcheck disable=SC2086
        line=$("$exe" $args --threads "$thr" --steps "$steps" --warmup "$warm" --json \
               "${OURS_PREC[@]}" 2>"$OUT/err.txt" | tail -n 1)
    else
        # shellcheck disable=SC2086
        line=$("${TORCH_ENV[@]}" "$PY" "$TORCH_REF" $args --threads "$thr" --steps "$steps" \
               --warmup "$warm" --json "${TORCH_PREC[@]}" 2>"$OUT/err.txt" | tail -n 1)
    fi
    case "$line" in
    \{*) ;;
    *) echo "side_by_side.sh: $prog $cfg failed:" >&2; cat "$OUT/err.txt" >&2; line="{}" ;;
    esac
    printf '{"who":"%s","config":"%s","threads":%s,"round":%s,"load":%s,"r":%s}\n' \
        "$prog" "$cfg" "$thr" "$round" "$load" "$line" >> "$RAW"
    printf '  round %s  %-14s %-5s threads %s  load %-5s %s ms\n' "$round" "$cfg" "$prog" \
        "$thr" "$load" "$(echo "$line" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % d.get("median_ms", float("nan")))')"
}

echo "cellcount: $BENCH"
echo "torch:     $PY $TORCH_REF ($("$PY" -c 'import torch; print(torch.__version__)'), $BLAS)"
[ -n "$ALSO" ] && echo "before:    $ALSO"
echo "precision $PRECISION, rounds $ROUNDS, threads: $THREADS, configs: $CONFIGS; raw results in $RAW"
for round in $(seq 1 "$ROUNDS"); do
    for thr in $THREADS; do
        for cfg in $CONFIGS; do
            if [ $((round % 2)) = 1 ]; then
                run_one ours "$cfg" "$thr" "$round"; run_one torch "$cfg" "$thr" "$round"
                [ -n "$ALSO" ] && run_one before "$cfg" "$thr" "$round"
            else
                [ -n "$ALSO" ] && run_one before "$cfg" "$thr" "$round"
                run_one torch "$cfg" "$thr" "$round"; run_one ours "$cfg" "$thr" "$round"
            fi
        done
    done
done

"$PY" - "$RAW" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = []
for r in rows:
    k = (r["config"], r["threads"])
    if k not in keys:
        keys.append(k)
def med(v):
    return statistics.median(v) if v else float("nan")
also = any(r["who"] == "before" for r in rows)
print()
print("| config | threads | ours median ms | torch median ms | ours/torch | ours GFLOP/s "
      "| ours RSS MiB | torch RSS MiB | ours heap allocs | load avg |"
      + (" before ms | before/torch |" if also else ""))
print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if also else ""))
for cfg, thr in keys:
    sel = [r for r in rows if r["config"] == cfg and r["threads"] == thr]
    o = [r["r"] for r in sel if r["who"] == "ours" and "median_ms" in r["r"]]
    t = [r["r"] for r in sel if r["who"] == "torch" and "median_ms" in r["r"]]
    om, tm = med([x["median_ms"] for x in o]), med([x["median_ms"] for x in t])
    b = [r["r"] for r in sel if r["who"] == "before" and "median_ms" in r["r"]]
    bm = med([x["median_ms"] for x in b])
    extra = (" %.1f | %.2f |" % (bm, bm / tm if tm == tm and tm > 0 else float("nan"))) if also else ""
    print(("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.0f | %.0f | %s | %.2f |" % (
        cfg, thr, om, tm, om / tm if tm == tm and tm > 0 else float("nan"),
        med([x["gflops_achieved"] for x in o]),
        max([x["peak_rss_mib"] for x in o] or [float("nan")]),
        max([x["peak_rss_mib"] for x in t] or [float("nan")]),
        max([x["heap_allocs"] for x in o] or ["-"]),
        statistics.mean([r["load"] for r in sel]))) + extra)
print()
print("per round (ms): " + "; ".join(
    "%s/%d: ours %s torch %s" % (cfg, thr,
        [round(r["r"].get("median_ms", float("nan")), 1) for r in rows
         if r["config"] == cfg and r["threads"] == thr and r["who"] == "ours"],
        [round(r["r"].get("median_ms", float("nan")), 1) for r in rows
         if r["config"] == cfg and r["threads"] == thr and r["who"] == "torch"])
    for cfg, thr in keys))
EOF
