#!/usr/bin/env bash
# test_slurm.sh - a two-point sweep through a real Slurm (issue 14): a
# slurmctld and a slurmd on 127.0.0.1 (AuthType=auth/none, no munge; state,
# spool and logs in a temp dir; both started with -D in the background and
# stopped by PID), `sweep --emit-slurm`, `sbatch --wait` of the array, then
# the dependent report job; the report must show both points.
# Needs root and Debian's slurm-wlm; SKIP unless CC_TEST_SLURM=1 (CI sets
# it: the test starts daemons) and slurmctld, slurmd and sbatch exist.
set -u
if [ "${CC_TEST_SLURM:-0}" != 1 ]; then echo "SKIP: CC_TEST_SLURM=1 not set"; exit 77; fi
for b in slurmctld slurmd sbatch scontrol sinfo; do
    command -v $b >/dev/null || [ -x /usr/sbin/$b ] || { echo "SKIP: $b not found (slurm-wlm)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (slurmd)"; exit 77; }
PATH=$PATH:/usr/sbin
plugins=$(dirname "$(find /usr/lib -name auth_none.so -path '*slurm*' 2>/dev/null | head -1)")
[ -f "$plugins/auth_none.so" ] || { echo "SKIP: Slurm's auth/none plugin not found"; exit 77; }
cc=$(pwd)/cellcount
tmp=$(mktemp -d /tmp/cc_slurm_XXXXXX)
chmod 755 "$tmp"
ctld= slurmd_pid=
cleanup() {
    [ -n "$ctld" ] && kill "$ctld" 2>/dev/null
    [ -n "$slurmd_pid" ] && kill "$slurmd_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
# Free ports (a Slurm on this machine would hold 6817/6818).
port() {
    local p
    for _ in $(seq 50); do
        p=$(( 20000 + RANDOM % 20000 ))
        ss -ltn 2>/dev/null | grep -q ":$p " || { echo $p; return; }
    done
    echo $p
}
p1=$(port); p2=$(port)
while [ "$p2" = "$p1" ]; do p2=$(port); done
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log"
cat > "$tmp/slurm.conf" <<CONF
ClusterName=cctest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$p1
SlurmdPort=$p2
AuthType=auth/none
CredType=cred/none
PluginDir=$plugins
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cc Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$tmp/log/ctld.out" 2>&1 &
ctld=$!
slurmd -D -N localhost -f "$SLURM_CONF" >"$tmp/log/slurmd.out" 2>&1 &
slurmd_pid=$!
up=0
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && { up=1; break; }
    sleep 0.5
done
if [ $up != 1 ]; then
    echo "FAIL: Slurm did not come up"; sinfo 2>&1; tail -20 "$tmp"/log/*; exit 1
fi
echo "ok: slurmctld ($ctld) and slurmd ($slurmd_pid) up"

"$cc" simulate --out "$tmp/sim.h5" --size 64x64 --counts 2,10,25,40 --focus 1,8 --sites 5 \
    --image-size 174x130 --stain 1 --split 60/20/20 >/dev/null 2>&1 || { echo "FAIL: simulate"; exit 1; }
cd "$tmp"
"$cc" sweep --grid fpn.width=4,8 --set fpn.depth=2 --set data.file="$tmp/sim.h5" \
    --set fpn_train.epochs=1 --set fpn_train.batch=4 --set counter.width_div=16 \
    --set counter_train.epochs=1 --set counter_train.batch=4 -o sw \
    --emit-slurm job.sh --max-parallel 2 --time 00:10:00 --partition cc || { echo "FAIL: emit"; exit 1; }
t0=$(date +%s)
jid=$(timeout 300 sbatch --parsable --wait job.sh); rc=$?
echo "array job $jid ended: rc $rc after $(( $(date +%s) - t0 ))s"
rjid=$(timeout 120 sbatch --parsable --wait --dependency=afterany:"$jid" job_report.sh); rrc=$?
fail=0
[ $rc -eq 0 ] || { echo "FAIL: array job rc $rc"; cat sw/slurm/*.log; fail=1; }
[ $rrc -eq 0 ] || { echo "FAIL: report job rc $rrc"; fail=1; }
cat sw/report.txt 2>/dev/null
for p in fpn.width=4 fpn.width=8; do
    grep -q "^$p " sw/report.txt 2>/dev/null && echo "ok: report shows $p" || { echo "FAIL: $p not in the report"; fail=1; }
done
grep -q "not in the table" sw/report.txt && { echo "FAIL: report lists missing points"; fail=1; }
ls sw/slurm/ | grep -qE "^${jid}_[01]\.log$" && echo "ok: logs named %A_%a" || { echo "FAIL: no %A_%a logs"; ls sw/slurm; fail=1; }
# Resubmitting skips the finished points.
jid2=$(timeout 120 sbatch --parsable --wait job.sh) && grep -q "skipped" sw/slurm/"${jid2}"_0.log &&
    echo "ok: resubmitted array skips finished points" || { echo "FAIL: resubmit"; cat sw/slurm/"${jid2}"_0.log; fail=1; }
[ $fail = 0 ] || tail -30 "$tmp"/log/slurmctld.log "$tmp"/log/slurmd.log
exit $fail
