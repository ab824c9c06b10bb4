#!/bin/bash
# collect.sh RUN_DIR [evaluate options...]: the predictions of RUN_DIR's
# validation and test splits, with counter.tta = none and = flips, saved as
# RUN_DIR/preds_<tta>_<split>.npz for ensemble.py (needs h5py and numpy).
# The options are those the run was evaluated with (experiment file, --set
# lines); `cellcount` is taken from $CELLCOUNT or the PATH.
set -euo pipefail
R=$1; shift
CC=${CELLCOUNT:-cellcount}
for tta in none flips; do
  for split in val test; do
    "$CC" evaluate "$@" --set counter.tta=$tta --split $split --out "$R" > "$R/eval_${tta}_${split}.txt"
    python3 - "$R" $tta $split <<'PY'
import sys, h5py, numpy as np
r, tta, split = sys.argv[1:4]
with h5py.File(f"{r}/run.h5", "r") as f:
    t = f[f"predictions/{split}"]     # one dataset per column (runlog.c)
    np.savez(f"{r}/preds_{tta}_{split}.npz",
             **{c: t[c][()] for c in ("index", "truth", "count", "sigma_raw", "focus", "baseline")})
PY
  done
done
