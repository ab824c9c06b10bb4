#!/usr/bin/python3
"""A density counter on the ground-truth masks, in PyTorch: how well the
architecture of `counter.arch = vgg11_density` counts simulated w2 scenes
when the FPN is taken out of the question and the training scenes grow
(docs/RESULTS.md, "A density counter at paper scale").

  experiments/occlusion/density_gt.py DATA.h5 FRESH.h5 [FRESH.h5 ...] \
      [--train TRAIN.h5] [--epochs E] [--width W] [--seed S] \
      [--density-weight L] [--sigma S] [--size HxW]

DATA.h5: the reproduction's data set.  The F1 images of its training split
are the training scenes, unless --train names a set whose F1 images all
are (e.g. 6,000 scenes from `simulate --focus 1 --sites 250`).  Scored on
the F1 images of its validation and test splits and of every FRESH.h5.
Input: the true mask area-averaged to 96x128 (--size: another divisor of
the stored size, e.g. 192x256 to read it as stored).  Network: conv3x3 + BN +
LeakyReLU blocks W, M, 2W, M, 4W, 4W, M (W = 32: vgg11_density at
width_div 2), then 1x1 conv 4W -> 2W, BN, LeakyReLU, 1x1 conv -> 1, ReLU,
summed over the 12x16 positions (H/8 x W/8).  Smooth-L1 loss on the count, Adam 1e-3,
cosine schedule, batch 16, random flips; one thread.  Prints MAE / max
error (and MAE by count: 1-20, 21-40, ..., 81-100) every few epochs.
--density-weight L > 0 adds L x the squared difference between the map
and its target summed over the map, the target being a Gaussian of sd
--sigma (0.6) positions at every cell's centre, normalised to sum 1 (what
`counter.density_weight` does; the training set needs /centres, which
`cellcount simulate` writes).  Needs Debian's python3-torch and
python3-h5py.
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


SIZE = [96, 128]    # the input size (--size); the density map is 1/8 of it


def grid():
    return SIZE[0] // 8, SIZE[1] // 8


def density_target(xy, sigma):
    """A map summing to the number of centres xy (fractions; NaN = none)."""
    GH, GW = grid()
    gy, gx = np.arange(GH)[:, None], np.arange(GW)[None, :]
    d = np.zeros((GH, GW), np.float64)
    for x, y in xy[np.isfinite(xy[:, 0])]:
        g = np.exp(-((gx - (x * GW - 0.5)) ** 2 + (gy - (y * GH - 0.5)) ** 2) / (2 * sigma * sigma))
        d += g / g.sum()
    return d.astype(np.float32)


def load_f1(path, split=None, sigma=None):
    """The F1 images' masks at SIZE and their counts (of one split), and
    with sigma their density targets."""
    with h5py.File(path, 'r') as h:
        sel = h['focus'][()] == 1
        if split is not None:
            sel &= h['split'][()] == split
        idx = np.nonzero(sel)[0]
        m = h['masks'][idx.min():idx.max() + 1][idx - idx.min()].astype(np.float32)
        y = h['counts'][()][idx].astype(np.float32)
        if sigma is not None:
            if 'centres' not in h:
                sys.exit('%s has no /centres (simulate it again with this build)' % path)
            c = h['centres'][idx.min():idx.max() + 1][idx - idx.min()]
            t = torch.tensor(np.stack([density_target(v, sigma) for v in c]))[:, None]
    n, c, hh, ww = m.shape
    H, W = SIZE
    if hh % H or ww % W:
        sys.exit('%s: masks of %dx%d cannot be area-averaged to %dx%d' % (path, hh, ww, H, W))
    m = m.reshape(n, c, H, hh // H, W, ww // W).mean(axis=(3, 5))
    if sigma is not None:
        return torch.tensor(m), torch.tensor(y), t
    return torch.tensor(m), torch.tensor(y)


def cbr(ci, co):
    return [nn.Conv2d(ci, co, 3, padding=1), nn.BatchNorm2d(co), nn.LeakyReLU(0.01)]


class Density(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.body = nn.Sequential(*cbr(1, w), nn.MaxPool2d(2), *cbr(w, 2 * w), nn.MaxPool2d(2),
                                  *cbr(2 * w, 4 * w), *cbr(4 * w, 4 * w), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 1), nn.BatchNorm2d(2 * w),
                                  nn.LeakyReLU(0.01), nn.Conv2d(2 * w, 1, 1))
        self.head[-1].bias.data.fill_(50.0 / (grid()[0] * grid()[1]))

    def density(self, x):
        return F.relu(self.head(self.body(x)))

    def forward(self, x):
        return self.density(x).sum(dim=(1, 2, 3))


def main(argv):
    opts = {'--train': None, '--epochs': '60', '--width': '32', '--seed': '1',
            '--density-weight': '0', '--sigma': '0.6', '--size': '96x128'}
    pos = []
    it = iter(argv)
    for a in it:
        if a in opts:
            opts[a] = next(it)
        else:
            pos.append(a)
    if len(pos) < 1:
        sys.exit(__doc__)
    SIZE[:] = [int(v) for v in opts['--size'].split('x')]
    torch.set_num_threads(1)
    torch.manual_seed(int(opts['--seed']))
    data = pos[0]
    lam = float(opts['--density-weight'])
    sig = float(opts['--sigma']) if lam > 0 else None
    tr = load_f1(opts['--train'], None, sig) if opts['--train'] else load_f1(data, 0, sig)
    xtr, ytr = tr[0], tr[1]
    dtr = tr[2] if lam > 0 else torch.zeros(len(xtr), 1, *grid())
    sets = [('val', load_f1(data, 1)), ('test', load_f1(data, 2))]
    sets += [(p.rsplit('/', 1)[-1], load_f1(p)) for p in pos[1:]]
    net = Density(int(opts['--width']))
    epochs, batch = int(opts['--epochs']), 16
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)

    def score(x, y):
        net.eval()
        with torch.no_grad():
            p = torch.cat([net(x[i:i + 120]) for i in range(0, len(x), 120)])
        net.train()
        e = (p - y).abs()
        r = ' '.join('%.2f' % e[(y > lo) & (y <= lo + 20)].mean().item() for lo in range(0, 100, 20))
        return '%.3f/%.1f [%s]' % (e.mean().item(), e.max().item(), r)

    for ep in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr) - batch + 1, batch):
            b = perm[i:i + batch]
            x, t = xtr[b], dtr[b]
            if torch.rand(1) < 0.5:
                x, t = x.flip(3), t.flip(3)
            if torch.rand(1) < 0.5:
                x, t = x.flip(2), t.flip(2)
            d = net.density(x)
            loss = F.smooth_l1_loss(d.sum(dim=(1, 2, 3)), ytr[b])
            if lam > 0:
                loss = loss + lam * ((d - t) ** 2).sum(dim=(1, 2, 3)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if ep % 10 == 9 or ep == epochs - 1 or (opts['--train'] and ep % 3 == 2):
            print('epoch %d  train %s  ' % (ep + 1, score(xtr, ytr)) +
                  '  '.join('%s %s' % (n, score(*xy)) for n, xy in sets), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
