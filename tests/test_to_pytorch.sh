#!/bin/sh
# test_to_pytorch.sh - scripts/to_pytorch.py round trip (docs/PARAMS.md):
# a tiny trained run -> PyTorch reproduces evaluate's stored counts and
# sigmas; the state_dict back into our checkpoint layout -> `cellcount count`
# counts identically; a state_dict edited in PyTorch (count head's last bias
# + 1) -> cellcount counts exactly 1 more.
# Needs Debian's /usr/bin/python3 with python3-torch and python3-h5py; prints
# "SKIP: <reason>" and exits 77 (automake's skip) otherwise.  Not a build
# dependency; .ci/run installs both so that CI runs this test.
set -eu
PY=/usr/bin/python3
top=${CC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cc=${CELLCOUNT:-./cellcount}
if [ ! -x "$PY" ]; then
    echo "SKIP: $PY not found (Debian's python3)"
    exit 77
fi
if ! out=$("$PY" -c 'import torch, h5py' 2>&1); then
    echo "SKIP: $PY cannot import torch and h5py (apt-get install python3-torch python3-h5py): $(echo "$out" | tail -n 1)"
    exit 77
fi
tmp=$(mktemp -d /tmp/cc_to_pytorch_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# a tiny run: FPN width 4, VGG-11 / 16 reading mask + image (so that its
# input varies even where the short-trained mask is all 0), one and two
# epochs, evaluated with the calibration's count term (carried both ways)
"$cc" quickstart --out "$tmp/qs" --threads 2 --sites 1 --set fpn.width=4 \
    --set counter.width_div=16 --set counter.input=mask+image \
    --set fpn_train.epochs=1 --set counter_train.epochs=2 --set counter.calibrate_count=true \
    > "$tmp/quickstart.log" 2>&1 || { cat "$tmp/quickstart.log"; exit 1; }
# the same directory with the other stain: refused, not silently reused
if "$cc" quickstart --out "$tmp/qs" --stain 1 --threads 1 > "$tmp/qs1.log" 2>&1 ||
    ! grep -q "holds w2 images, not w1" "$tmp/qs1.log"; then
    echo "quickstart --stain 1 over a w2 set was not refused:"; cat "$tmp/qs1.log"; exit 1
fi
run=$tmp/qs/run
"$PY" "$top/scripts/to_pytorch.py" "$run" --save "$tmp/sd.pt" --threads 2

# the way back, unchanged: the same counts from both directories
"$PY" "$top/scripts/to_pytorch.py" --to-cellcount "$tmp/sd.pt" "$run/config.ini" "$tmp/back"
"$cc" simulate --out-dir "$tmp/tif" --counts 12,40,75 --focus 1,20 --sites 1 --stain 1 \
    --image-size 348x260 > /dev/null
"$cc" count --run "$run" --threads 2 "$tmp/tif/images" > "$tmp/a.tsv"
"$cc" count --run "$tmp/back" --threads 2 "$tmp/tif/images" > "$tmp/b.tsv"
test "$(wc -l < "$tmp/a.tsv")" -eq 7
# The numbers must be byte-identical; the ood column may not be (the way
# back carries no training-set statistics, so it says n/a).
cut -f1-5 "$tmp/a.tsv" > "$tmp/a5.tsv"
sed 's#/back/#/run/#' "$tmp/b.tsv" | cut -f1-5 | cmp - "$tmp/a5.tsv" || {
    echo "FAIL: counts differ after the round trip"; paste "$tmp/a.tsv" "$tmp/b.tsv"; exit 1; }

# edited in PyTorch: count head's last bias + 1 -> counts + 1 where the ReLU is open
"$PY" - "$tmp/sd.pt" "$tmp/sd1.pt" <<'EOF'
import sys, torch
d = torch.load(sys.argv[1])
d['state_dict']['counter.heads.count.fc3.bias'] += 1.0
torch.save(d, sys.argv[2])
EOF
"$PY" "$top/scripts/to_pytorch.py" --to-cellcount "$tmp/sd1.pt" "$run/config.ini" "$tmp/back1"
"$cc" count --run "$tmp/back1" --threads 2 "$tmp/tif/images" > "$tmp/c.tsv"
"$PY" - "$tmp/a.tsv" "$tmp/c.tsv" <<'EOF'
import csv, sys
a = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
c = list(csv.DictReader(open(sys.argv[2]), delimiter='\t'))
assert len(a) == len(c) == 6, (len(a), len(c))
checked = 0
for x, y in zip(a, c):
    if float(x['count']) > 0.01:
        assert abs(float(y['count']) - float(x['count']) - 1.0) < 2e-3, (x, y)
        checked += 1
assert checked > 0, 'every count is 0: nothing checked'
print('edited state_dict: %d counts moved by +1' % checked)
EOF

# the calibration's count term travels with --to-cellcount: count reads it
# from the run file written there (sigma = sqrt((1 raw)^2 + (0.05 count)^2))
for pc in 0 0.05; do
    "$PY" "$top/scripts/to_pytorch.py" --to-cellcount "$tmp/sd1.pt" "$run/config.ini" \
        "$tmp/back_pc$pc" --sigma-scale 1 --sigma-per-count $pc > /dev/null
    "$cc" count --run "$tmp/back_pc$pc" --threads 2 "$tmp/tif/images" > "$tmp/pc$pc.tsv"
done
"$PY" - "$tmp/pc0.tsv" "$tmp/pc0.05.tsv" <<'EOF'
import csv, math, sys
a = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
b = list(csv.DictReader(open(sys.argv[2]), delimiter='\t'))
assert len(a) == len(b) == 6, (len(a), len(b))
widened = 0
for x, y in zip(a, b):
    assert x['count'] == y['count'], (x, y)
    c, s0, s1 = float(x['count']), float(x['sigma']), float(y['sigma'])
    want = math.hypot(s0, 0.05 * max(c, 0))
    assert abs(s1 - want) <= 1e-3 * max(1.0, want), (c, s0, s1, want)
    widened += s1 > s0 * (1 + 1e-3)
assert widened > 0, 'no sigma widened: the count term was not applied'
print('count term carried: %d of %d sigmas widened as sqrt(raw^2 + (0.05 count)^2)'
      % (widened, len(b)))
EOF

# A model this small and short-trained counts the same everywhere (its
# finest mask is all 0 behind the ReLU, its heads' last weights near 0),
# which checks little.  So: open that ReLU (finest mean head's last bias
# + 1), perturb every conv/linear weight (seeded), bring it back, let
# cellcount evaluate it, and check PyTorch's forward against those counts,
# which now vary (--require-spread).
cat > "$tmp/perturb.py" <<'EOF'
import sys, torch
torch.manual_seed(1)
d = torch.load(sys.argv[1])
sd = d['state_dict']
finest = max(int(k.split('.')[3]) for k in sd if k.startswith('fpn.heads.mean.'))
sd['fpn.heads.mean.%d.conv3.bias' % finest] += 1.0
for k, t in sd.items():
    if t.dim() >= 2:
        t += 0.5 * t.std() * torch.randn_like(t)
# the heads' last layers start at 0 weight (counter.init_bias = data):
# give them weights that make the output depend on the features
# (vgg11_density: its density's last conv)
cw = 'counter.heads.count.' + ('conv2' if 'counter.heads.count.conv2.weight' in sd else 'fc3')
sd[cw + '.weight'].normal_(0, 2.0)
# (the log-variance's features reach ~1e5 after the shrunk BN below: weights
# of ~2e-5 keep it near its bias (~7) +- a few, so every sigma is finite and
# differs between images; 0.2 made them all inf, and inf vs inf checks nothing)
sd['counter.heads.logvar.fc3.weight'].normal_(0, 2e-5)
# and their BN statistics, fitted to features that hardly vary yet, shrunk
# so that the differences between images survive normalisation
for k, t in sd.items():
    if k.startswith('counter.heads.') and k.endswith('running_var'):
        t.mul_(1e-4)
# The count is ReLU(fc3 . f): with every image's features on one side of
# fc3's random weights, all counts are 0 and the check below has nothing to
# compare (it happened: a model trained with other float rounding).  So
# run the edited model on the run's images in PyTorch and, if one sign of
# those weights leaves fewer counts open than the other, take the other.
import os, h5py, numpy as np
sys.path.insert(0, sys.argv[4])
import to_pytorch as tp
run = sys.argv[3]
cfg = tp.read_config(os.path.join(run, 'config.ini'))
with h5py.File(tp.data_path(cfg, run, None), 'r') as f:
    raw = f['images'][:]
    x = torch.from_numpy(raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0))
model = tp.build(cfg, x.shape[2], x.shape[3])
def opened():
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        return int((model(x)[0] > 0).sum())
w = sd[cw + '.weight']
n_pos = opened()
w.neg_()
n_neg = opened()
if n_pos >= n_neg:
    w.neg_()
print('edited model: %d of %d counts open (%d with the other sign)'
      % (max(n_pos, n_neg), x.shape[0], min(n_pos, n_neg)))
torch.save(d, sys.argv[2])
EOF
"$PY" "$tmp/perturb.py" "$tmp/sd.pt" "$tmp/sd2.pt" "$run" "$top/scripts"
"$PY" "$top/scripts/to_pytorch.py" --to-cellcount "$tmp/sd2.pt" "$run/config.ini" "$tmp/back2"
"$cc" evaluate "$run/config.ini" --out "$tmp/back2" --threads 2 > "$tmp/eval2.log" 2>&1 ||
    { cat "$tmp/eval2.log"; exit 1; }
"$PY" "$top/scripts/to_pytorch.py" "$tmp/back2" --threads 2 --require-spread 0.5

# The other counter heads, the same way: a tiny run, its weights perturbed
# in PyTorch, evaluated by cellcount, PyTorch's forward checked against it
# (vgg11_gap averages over positions; resnet18 has its own blocks;
# vgg11_means is VGG-11 with counter.head_means: the heads also read the
# mean of the mask and of the image; vgg11_density sums a density map).
for arch in vgg11_gap resnet18 vgg11_means vgg11_density; do
    extra=""
    [ "$arch" = vgg11_means ] && extra="--set counter.head_means=true"
    "$cc" quickstart --out "$tmp/qs_$arch" --threads 2 --sites 1 --set fpn.width=4 \
        --set counter.arch=${arch%_means} --set counter.width_div=16 --set counter.input=mask+image \
        --set fpn_train.epochs=1 --set counter_train.epochs=1 $extra \
        > "$tmp/qs_$arch.log" 2>&1 || { cat "$tmp/qs_$arch.log"; exit 1; }
    r=$tmp/qs_$arch/run
    "$PY" "$top/scripts/to_pytorch.py" "$r" --save "$tmp/sd_$arch.pt" --threads 2
    "$PY" "$tmp/perturb.py" "$tmp/sd_$arch.pt" "$tmp/sd2_$arch.pt" "$r" "$top/scripts"
    "$PY" "$top/scripts/to_pytorch.py" --to-cellcount "$tmp/sd2_$arch.pt" "$r/config.ini" \
        "$tmp/back_$arch"
    "$cc" evaluate "$r/config.ini" --out "$tmp/back_$arch" --threads 2 > "$tmp/eval_$arch.log" 2>&1 ||
        { cat "$tmp/eval_$arch.log"; exit 1; }
    "$PY" "$top/scripts/to_pytorch.py" "$tmp/back_$arch" --threads 2 --require-spread 0.5
done
echo "to_pytorch round trip: ok"
