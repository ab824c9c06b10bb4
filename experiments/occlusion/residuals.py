#!/usr/bin/env python3
"""How much of a counter's error on simulated scenes is cells hidden under
others (docs/RESULTS.md, "What the simulated images can show").

  bench/sim-occlusion 25 > occlusion.tsv      # the default simulate set's scenes
  experiments/occlusion/residuals.py RUN/run.h5 DATA.h5 occlusion.tsv [TABLE]

TABLE defaults to predictions/test (written by `cellcount evaluate`).  For
every predicted image the scene's hidden cells (less than 5% / 25% of the
body uncovered by any other cell, at 696x520) are looked up by (count,
site); printed: the error by number of hidden cells, the regression of the
residual on the hidden cells' deviation from their mean at that count, and
the MAE and max error left once that deviation is known."""
import sys
import collections

import h5py
import numpy as np


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    run, data, occ = sys.argv[1:4]
    table = sys.argv[4] if len(sys.argv) > 4 else "predictions/test"
    hid = {}
    with open(occ) as f:
        head = f.readline().split()
        for line in f:
            v = dict(zip(head, line.split()))
            hid[(int(v["count"]), int(v["site"]))] = (int(v["hidden5"]), int(v["hidden25"]))
    with h5py.File(run, "r") as r:
        t = r[table]      # a table: one dataset per column (runlog.c)
        col = {c: t[c][()] for c in ("index", "truth", "count")}
    with h5py.File(data, "r") as d:
        site = d["site"][()]
        counts = d["counts"][()]
    idx = col["index"].astype(int)
    truth = col["truth"]
    pred = col["count"]
    assert np.all(counts[idx] == truth), "the predictions are not of this data set"
    h5 = np.array([hid[(int(counts[i]), int(site[i]))][0] for i in idx], float)
    h25 = np.array([hid[(int(counts[i]), int(site[i]))][1] for i in idx], float)
    res = pred - truth
    print(f"{len(res)} images: MAE {np.mean(np.abs(res)):.3f}, max error {np.max(np.abs(res)):.2f}")
    print("by hidden cells (<5% uncovered):  n  MAE  bias  max")
    for k in sorted(set(h5.astype(int))):
        m = h5 == k
        print(f"  {k:2d}  {m.sum():4d}  {np.mean(np.abs(res[m])):.3f}  {np.mean(res[m]):+.3f}"
              f"  {np.max(np.abs(res[m])):.2f}")
    # deviation of the hidden cells from their mean at the same count
    for name, h in (("<5%", h5), ("<25%", h25)):
        dev = h.copy()
        for c in set(truth):
            m = truth == c
            dev[m] -= h[m].mean()
        slope, icpt = np.polyfit(dev, res, 1)
        r = np.corrcoef(dev, res)[0, 1]
        left = res - slope * dev - icpt
        print(f"hidden {name}: residual = {slope:+.3f} x (hidden - mean at the count) "
              f"{icpt:+.3f}, r = {r:+.3f}; without that part: MAE {np.mean(np.abs(left)):.3f}, "
              f"max error {np.max(np.abs(left)):.2f}")


if __name__ == "__main__":
    main()
