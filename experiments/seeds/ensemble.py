#!/usr/bin/env python3
"""ensemble.py none|flips RUN_DIR [RUN_DIR ...]: the runs' counters as one
model, an equal mixture of their predictions (mean of the counts; variance =
mean variance + spread of the counts), sigma calibrated on the validation
split as `cellcount evaluate` does (one factor, the Gaussian NLL's optimum).
Reads RUN_DIR/preds_<tta>_{val,test}.npz written by collect.sh; prints the
test split's MAE, bias, R2, max error and calibrated 95% coverage, overall
and by count range.  With one run it reproduces evaluate's own table."""
import sys

import numpy as np


def load(runs, tta, split):
    preds = [np.load(f"{r}/preds_{tta}_{split}.npz") for r in runs]
    for p in preds[1:]:
        assert (p["index"] == preds[0]["index"]).all(), "runs evaluated on different images"
    mu = np.stack([p["count"] for p in preds])
    var = np.stack([p["sigma_raw"] ** 2 for p in preds])
    m = mu.mean(0)
    return preds[0]["truth"], m, np.sqrt(var.mean(0) + ((mu - m) ** 2).mean(0))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("none", "flips"):
        sys.exit(__doc__)
    tta, runs = sys.argv[1], sys.argv[2:]
    tv, mv, sv = load(runs, tta, "val")
    k = np.sqrt(np.mean(((tv - mv) / sv) ** 2))
    t, m, s = load(runs, tta, "test")
    s = s * k
    e = m - t
    print(f"{len(runs)} run(s), tta {tta}, sigma scale {k:.3f}")
    groups = [("overall", 1, 10**9), ("count 1-20", 1, 20), ("count 21-40", 21, 40),
              ("count 41-60", 41, 60), ("count 61-80", 61, 80), ("count 81+", 81, 10**9)]
    for name, lo, hi in groups:
        g = (t >= lo) & (t <= hi)
        ee, tt = e[g], t[g]
        r2 = 1 - np.sum(ee**2) / np.sum((tt - tt.mean()) ** 2)
        cov = np.mean(np.abs(ee) <= 1.96 * s[g])
        print(f"{name:12s} n {g.sum():4d}  MAE {np.mean(np.abs(ee)):.3f}  bias {ee.mean():+.2f}  "
              f"R2 {r2:.4f}  max {np.max(np.abs(ee)):.2f}  cov95 {cov:.3f}")


if __name__ == "__main__":
    main()
