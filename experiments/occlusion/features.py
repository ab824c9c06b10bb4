#!/usr/bin/python3
"""How far a handful of global features of the ground-truth mask or of the
image count simulated w2 scenes, as a function of the training scenes
(docs/RESULTS.md, "What the simulated scenes allow").

  experiments/occlusion/features.py TRAIN.h5 TEST.h5 [FRESH.h5 ...] [--focus F] [--sizes N,N,..]

TRAIN.h5: a data set from `cellcount simulate` (all its images at focus F
are training scenes, whatever their split); TEST.h5: the reproduction's
data set (its test split) and any further sets (all their images at focus
F).  Per scene: the ground-truth mask's area, boundary, connected parts and
the area deeper than 3, 6 and 9 px inside it ("mask"), the image's sum and
its area above 0.1 .. 0.5 ("image"), or both; a gradient-boosted regressor
(scikit-learn) per feature set and training size.  Prints MAE and max
error per set, and the MAE by count range of the largest "mask" model.

This is not a bound: a network may find more in the pixels than twelve
numbers.  It says what the union of the bodies (the FPN's target) tells
about the count with 12x the reproduction's scenes, and where the error
sits.  Needs Debian's python3-h5py, python3-scipy and python3-sklearn (not
dependencies of cellcount)."""
import argparse

import h5py
import numpy as np
import scipy.ndimage as nd
from sklearn.ensemble import HistGradientBoostingRegressor

MASK = list(range(6, 12))
IMAGE = list(range(0, 6))


def features(im, m):
    b = m > 0.5
    edge = b & ~nd.binary_erosion(b)
    parts = nd.label(b)[1]
    dt = nd.distance_transform_edt(b)
    return [im.sum()] + [(im > t).sum() for t in (0.1, 0.2, 0.3, 0.4, 0.5)] + \
           [b.sum(), edge.sum(), parts, (dt > 3).sum(), (dt > 6).sum(), (dt > 9).sum()]


def load(path, focus, split=None):
    with h5py.File(path, 'r') as f:
        sel = f['focus'][()] == focus
        if split is not None:
            sel &= f['split'][()] == split
        rows = np.where(sel)[0]
        if len(rows) == 0:
            raise SystemExit('%s: no images at focus F%d%s' % (path, focus,
                             '' if split is None else ' in split %d' % split))
        im = f['images'][rows][:, 0].astype(np.float32)
        im /= 255.0 if f['images'].dtype == np.uint8 else 1.0
        m = f['masks'][rows][:, 0]
        y = f['counts'][rows].astype(float)
    return np.array([features(a, b) for a, b in zip(im, m)]), y


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('train')
    p.add_argument('test')
    p.add_argument('fresh', nargs='*')
    p.add_argument('--focus', type=int, default=1)
    p.add_argument('--sizes', default='480,960,1920,3840,6000')
    a = p.parse_args()
    Xtr, ytr = load(a.train, a.focus)
    sets = [('test', *load(a.test, a.focus, split=2))]
    sets += [(path.rsplit('/', 1)[-1], *load(path, a.focus)) for path in a.fresh]
    order = np.random.RandomState(0).permutation(len(ytr))
    last = None
    for n in [int(s) for s in a.sizes.split(',')]:
        if n > len(ytr):
            print('(%d training scenes asked, %d there: skipped)' % (n, len(ytr)))
            continue
        idx = order[:n]
        for name, cols in (('image', IMAGE), ('mask', MASK), ('both', IMAGE + MASK)):
            r = HistGradientBoostingRegressor(max_iter=500, learning_rate=0.05, random_state=0)
            r.fit(Xtr[idx][:, cols], ytr[idx])
            out = []
            for sname, X, y in sets:
                e = r.predict(X[:, cols]) - y
                out.append('%s MAE %.3f max %.2f (%d)' % (sname, np.abs(e).mean(),
                                                         np.abs(e).max(), len(y)))
            print('train %5d  %-5s  %s' % (n, name, ' | '.join(out)))
            if name == 'mask':
                last = (n, r)
    if last:
        n, r = last
        print('MAE by count of the "mask" model with %d training scenes:' % n)
        for sname, X, y in sets:
            e = np.abs(r.predict(X[:, MASK]) - y)
            groups = [(lo, hi) for lo, hi in ((1, 20), (21, 40), (41, 60), (61, 80), (81, 100))]
            print('  %-16s %s' % (sname, '  '.join(
                '%d-%d: %.2f' % (lo, hi, e[(y >= lo) & (y <= hi)].mean()) for lo, hi in groups)))


if __name__ == '__main__':
    main()
