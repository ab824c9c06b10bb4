#!/bin/bash
# Summarise experiments/transfer/run.sh's jobs: per model family (sim/real,
# stain), the mean and spread (min-max) over seeds of MAE, bias, R2 and
# calibrated 95% coverage on the real images, overall and per focus level,
# with the mean-intensity baseline's MAE beside them; then the simulated
# test split of the sim-trained runs (the quickstart's own evaluation).
#   experiments/transfer/summary.sh OUT
set -euo pipefail
out=${1:?usage: summary.sh OUT}
row() {   # FILE GROUP -> "n MAE bias R2 cov95 baseMAE"
    awk -v g="$2" '
        /^evaluation on the test split/ && skip_sim { exit }
        { lab = $1; k = 2; if ($1 == "focus" || $1 == "count") { lab = $1 " " $2; k = 3 } }
        lab == g { print $(k), $(k+1), $(k+2), $(k+4), $(k+6), $(k+9); exit }' "$1"
}
stats() { # values on stdin -> "mean [min, max]"
    awk '{ v[NR] = $1; s += $1 } END { if (!NR) { print "-"; exit }
        mn = v[1]; mx = v[1]; for (i = 2; i <= NR; i++) { if (v[i] < mn) mn = v[i]; if (v[i] > mx) mx = v[i] }
        if (NR == 1) printf "%.3f", s; else printf "%.3f [%.3f, %.3f]", s / NR, mn, mx }'
}
printf '| model (trained on) | scored on | group | seeds | n | MAE | bias | R2 | cov95 | baseline MAE |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for fam in sim_w2 sim_w2aug sim_w1 sim_w1aug real_w2 real_w1; do
    files=$(ls "$out"/${fam}_s*/eval_real.txt 2>/dev/null || true)
    [ -n "$files" ] || continue
    st=$(echo "$fam" | sed "s/.*_w\([12]\).*/w\1/")
    case $fam in sim*) on="all real $st" ;; *) on="real $st test split" ;; esac
    for g in overall "focus F1" "focus F48" "count 1-20" "count 81+"; do
        rows=$(for f in $files; do row "$f" "$g"; done)
        [ -n "$rows" ] || continue
        k=$(echo "$rows" | wc -l)
        n=$(echo "$rows" | awk 'NR == 1 { print $1 }')
        col() { echo "$rows" | awk -v c="$1" '{ print $c }' | stats; }
        printf '| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n' "$fam" "$on" "$g" "$k" "$n" \
            "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)"
    done
done
echo
echo 'Simulated held-out scenes (test split of each sim-trained run, its own evaluation):'
printf '| model | group | seeds | n | MAE | bias | R2 | cov95 | baseline MAE |\n|---|---|---|---|---|---|---|---|---|\n'
for fam in sim_w2 sim_w2aug sim_w1 sim_w1aug; do
    files=$(ls "$out"/${fam}_s*/log.txt 2>/dev/null || true)
    [ -n "$files" ] || continue
    for g in overall "focus F1" "focus F48"; do
        rows=$(for f in $files; do awk '/^evaluation on the test split/ { on = 1 } on' "$f" > "$f.test"; row "$f.test" "$g"; rm -f "$f.test"; done)
        [ -n "$rows" ] || continue
        k=$(echo "$rows" | wc -l)
        n=$(echo "$rows" | awk 'NR == 1 { print $1 }')
        col() { echo "$rows" | awk -v c="$1" '{ print $c }' | stats; }
        printf '| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n' "$fam" "$g" "$k" "$n" \
            "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)"
    done
done
echo
echo 'Counter training stability (issue 11 criterion: after the first quarter of the epochs, no validation MAE above max(1.5x, +1 cell) the previous epoch'"'"'s).'
echo '"average" = the weight average the run keeps (counter.ema, the default); "raw" = the trained weights with momentum BN statistics (what runs kept before).'
printf '| run | epochs | average: violations | average: worst ratio | raw: violations | raw: worst ratio | val MAE at the last epoch (average / raw) |\n|---|---|---|---|---|---|---|\n'
for f in "$out"/*/log.txt; do
    job=$(basename "$(dirname "$f")")
    grep -q '^counter epoch [0-9]*/[0-9]*: ' "$f" || continue
    awk -v job="$job" '
        /^counter epoch [0-9]+\/[0-9]+: / {
            split($3, a, "/"); e = a[1] + 0; E = a[2] + 0
            for (i = 1; i <= NF; i++) {
                if ($i == "MAE" && $(i-1) != "weights") avg[e] = $(i+1) + 0
                if ($i == "MAE" && $(i-1) == "weights") raw[e] = $(i+1) + 0
            }
            last = e
        }
        function check(v, name,   e, n, w, r) {
            n = 0; w = 0
            for (e = int(E / 4) + 2; e <= last; e++) {
                if (!((e - 1) in v) || !(e in v)) continue
                r = v[e] / v[e-1]; if (r > w) w = r
                if (v[e] > v[e-1] * 1.5 && v[e] > v[e-1] + 1) n++
            }
            return n " | " sprintf("%.2f", w)
        }
        END { printf "| %s | %d/%d | %s | %s | %.2f / %.2f |\n", job, last, E, check(avg), check(raw), avg[last], raw[last] }' "$f"
done
