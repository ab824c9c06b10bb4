#!/usr/bin/env bash
# test_sweep_emit.sh - sweeps for other schedulers, without one (issue 14):
# --emit-commands, --emit-slurm (the script's directives), --point, and
# report listing missing points.  tests/test_slurm.sh runs the script
# through a real Slurm.
set -u
cc=$(pwd)/cellcount
tmp=$(mktemp -d /tmp/cc_emit_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
"$cc" simulate --out sim.h5 --size 64x64 --counts 2,10,25,40 --focus 1,8 --sites 5 \
    --image-size 174x130 --stain 1 --split 60/20/20 >/dev/null 2>&1 || { echo "FAIL: simulate"; exit 1; }
A=(--grid fpn.width=4,8 --set fpn.depth=2 --set data.file="$tmp/sim.h5" --set fpn_train.epochs=1
   --set fpn_train.batch=4 --set counter.width_div=16 --set counter_train.epochs=1
   --set counter_train.batch=4 --stages fpn -o "sw dir")
"$cc" sweep "${A[@]}" --emit-commands --threads 1 > cmds.txt || bad "emit-commands failed"
[ "$(wc -l < cmds.txt)" = 2 ] && grep -q -- "--point 1 --threads 1$" cmds.txt &&
    ok "one command per point" || bad "commands: $(cat cmds.txt)"
printf 'fpn.width=4\nfpn.width=8\n' | cmp -s - <(grep -v '^#' "sw dir/points.txt") &&
    ok "points.txt lists the points" || bad "points.txt: $(cat "sw dir/points.txt")"
"$cc" report "sw dir" > rep0.txt; rc=$?
[ $rc = 0 ] && grep -q "fpn.width=8: missing" rep0.txt && ok "report of an unstarted sweep lists missing points" ||
    bad "report rc $rc: $(cat rep0.txt)"
# Run the first command (a quoted directory name survives the shell).
bash -c "$(head -1 cmds.txt)" >/dev/null 2>&1 && [ -f "sw dir/fpn.width=4/DONE" ] &&
    ok "--point 0 ran point 0 only" || bad "--point 0"
[ ! -e "sw dir/fpn.width=8/run.h5" ] || bad "--point 0 touched point 1"
bash -c "$(head -1 cmds.txt)" 2>&1 | grep -q "1 skipped" && ok "rerun of a finished point skips it" ||
    bad "rerun of point 0 did not skip"
"$cc" report "sw dir" > rep1.txt
grep -q "^fpn.width=4 " rep1.txt && grep -q "fpn.width=8: missing" rep1.txt &&
    ok "report: the finished point in the table, the other listed as missing" || bad "report: $(cat rep1.txt)"
"$cc" sweep "${A[@]}" --point 2 2>err.txt; rc=$?
[ $rc = 2 ] && grep -q "has 2 points" err.txt && ok "--point out of range: usage error" || bad "--point 2: rc $rc"
"$cc" sweep "${A[@]}" --emit-slurm job.sh --threads 3 --partition p1 --time 1:00:00 --max-parallel 1 \
    2>/dev/null || bad "emit-slurm failed"
for want in '^#SBATCH --array=0-1%1$' '^#SBATCH --cpus-per-task=3$' '^#SBATCH --partition=p1$' \
            '^#SBATCH --time=1:00:00$' '^#SBATCH --requeue$' '^#SBATCH --signal=B:USR1@300$' \
            '^#SBATCH --output=sw dir/slurm/%A_%a.log$' 'OMP_NUM_THREADS=\${SLURM_CPUS_PER_TASK' \
            'HDF5_USE_FILE_LOCKING=FALSE' '--point \$SLURM_ARRAY_TASK_ID'; do
    grep -q -- "$want" job.sh || bad "job.sh lacks $want"
done
[ -x job.sh ] && [ -x job_report.sh ] && grep -q "report 'sw dir'" job_report.sh && [ -d "sw dir/slurm" ] &&
    ok "emit-slurm: job array and report scripts" || bad "emit-slurm scripts"
bash -n job.sh && bash -n job_report.sh || bad "emitted scripts are not valid bash"
exit $fail
