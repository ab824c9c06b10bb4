#!/bin/sh
# test_quickstart.sh - `cellcount quickstart` end to end on a tiny model:
# it simulates its calibration set (240 other scenes) beside the training
# set and fits the intervals on it; that set is the one `cellcount simulate`
# writes with the command in experiments/quickstart.ini (the same fitted
# factor); calibrate = none simulates none; a calibration set of the other
# stain left in the directory is refused, naming it.  The training set is
# split within each count by default (the images and split of `simulate
# --split-by count`); a set split otherwise left in the directory is
# refused unless --split-by says so.
set -eu
cc=${CELLCOUNT:-./cellcount}
tmp=$(mktemp -d /tmp/cc_quickstart_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tiny="--threads 1 --sites 1 --set fpn.width=4 --set counter.width_div=16 --set fpn_train.epochs=1 --set counter_train.epochs=2"
fail() { echo "FAIL: $*"; exit 1; }

# shellcheck disable=SC2086
"$cc" quickstart --out "$tmp/qs" $tiny > "$tmp/qs.out" 2> "$tmp/qs.err" || { cat "$tmp/qs.err"; fail "quickstart"; }
[ -s "$tmp/qs/cal.h5" ] || fail "no calibration set $tmp/qs/cal.h5"
line=$(head -n 1 "$tmp/qs.out")
case $line in
*"fitted on $tmp/qs/cal.h5 (960 images"*) ;;
*) fail "intervals not fitted on the calibration set: $line" ;;
esac
factor=${line%%sigma_raw*}

# the same images from `cellcount simulate`: the same fitted factor
"$cc" simulate --out "$tmp/cal_cli.h5" --stain 2 --focus 1,16,32,48 --sites 10 --image-size 348x260 \
    --size 128x96 --seed 11 --split 0/0/1 > /dev/null 2>&1
"$cc" evaluate "$tmp/qs/run/config.ini" -o "$tmp/qs/run" --set counter.calibrate=coverage \
    --calibrate-on "$tmp/cal_cli.h5" --tag cli --threads 1 > "$tmp/cli.out" 2>&1 || { cat "$tmp/cli.out"; fail "evaluate"; }
[ "$(head -n 1 "$tmp/cli.out" | sed 's/sigma_raw.*//')" = "$factor" ] ||
    fail "simulate's calibration set fits another factor: $(head -n 1 "$tmp/cli.out") vs $line"

# the training set: split by count, the same file as `cellcount simulate --split-by count`
h5dump -a split_by "$tmp/qs/sim.h5" | grep -q '"count"' || fail "sim.h5 is not split by count"
"$cc" simulate --out "$tmp/sim_cli.h5" --stain 2 --focus 1,16,32,48 --sites 1 --image-size 348x260 \
    --size 128x96 --seed 1 --split 80/10/10 --split-by count > /dev/null 2>&1 || fail "simulate --split-by count"
h5diff "$tmp/qs/sim.h5" "$tmp/sim_cli.h5" /split > /dev/null || fail "the quickstart's split differs from simulate's"
h5diff "$tmp/qs/sim.h5" "$tmp/sim_cli.h5" /images > /dev/null || fail "the quickstart's images differ from simulate's"
"$cc" simulate --out "$tmp/sim_scene.h5" --stain 2 --focus 1,16,32,48 --sites 1 --image-size 348x260 \
    --size 128x96 --seed 1 --split 80/10/10 > /dev/null 2>&1 || fail "simulate --split-by scene"
# a set split by scene where a count-split quickstart goes: refused, naming it
mkdir "$tmp/sc"
cp "$tmp/sim_scene.h5" "$tmp/sc/sim.h5"
# shellcheck disable=SC2086
if "$cc" quickstart --out "$tmp/sc" $tiny > "$tmp/sc.out" 2>&1; then
    fail "a set split by scene was used by a quickstart split by count"
fi
grep -q "$tmp/sc/sim.h5 is split by scene, not by count" "$tmp/sc.out" || { cat "$tmp/sc.out"; fail "split message"; }
# ... and used when --split-by says scene
# shellcheck disable=SC2086
"$cc" quickstart --out "$tmp/sc" --split-by scene $tiny > "$tmp/sc2.out" 2>&1 || { cat "$tmp/sc2.out"; fail "--split-by scene"; }
grep -q "reusing the simulated set $tmp/sc/sim.h5" "$tmp/sc2.out" || { cat "$tmp/sc2.out"; fail "scene set not reused"; }
"$cc" quickstart --out "$tmp/sc" --split-by diagonal > /dev/null 2>&1 && fail "--split-by diagonal accepted"
[ $? -eq 2 ] || fail "--split-by diagonal: exit status not 2"

# raw intervals asked for: no calibration set made (the trained run is reused)
rm "$tmp/qs/cal.h5"
# shellcheck disable=SC2086
"$cc" quickstart --out "$tmp/qs" $tiny --set counter.calibrate=none > "$tmp/none.out" 2>&1 ||
    { cat "$tmp/none.out"; fail "quickstart with calibrate = none"; }
[ ! -e "$tmp/qs/cal.h5" ] || fail "calibrate = none simulated a calibration set"
grep -q "^sigma = " "$tmp/none.out" && fail "calibrate = none fitted intervals"

# a w2 calibration set left where a w1 quickstart goes: refused
mkdir "$tmp/w1"
cp "$tmp/cal_cli.h5" "$tmp/w1/cal.h5"
# shellcheck disable=SC2086
if "$cc" quickstart --out "$tmp/w1" --stain 1 $tiny > "$tmp/w1.out" 2>&1; then
    fail "a w2 calibration set was used for a w1 quickstart"
fi
grep -q "$tmp/w1/cal.h5 holds w2 images, not w1" "$tmp/w1.out" || { cat "$tmp/w1.out"; fail "message"; }
echo "quickstart: split by count as simulate's, calibration set made, equal to simulate's, skipped for none, other stain or split refused"
