#!/usr/bin/python3
"""A density counter on the ground-truth masks, in PyTorch: how well the
architecture of `counter.arch = vgg11_density` counts simulated w2 scenes
when the FPN is taken out of the question and the training scenes grow
(docs/RESULTS.md, "A density counter at paper scale").

  experiments/occlusion/density_gt.py DATA.h5 FRESH.h5 [FRESH.h5 ...] \
      [--train TRAIN.h5] [--epochs E] [--width W] [--seed S]

DATA.h5: the reproduction's data set.  The F1 images of its training split
are the training scenes, unless --train names a set whose F1 images all
are (e.g. 6,000 scenes from `simulate --focus 1 --sites 250`).  Scored on
the F1 images of its validation and test splits and of every FRESH.h5.
Input: the true mask area-averaged to 96x128.  Network: conv3x3 + BN +
LeakyReLU blocks W, M, 2W, M, 4W, 4W, M (W = 32: vgg11_density at
width_div 2), then 1x1 conv 4W -> 2W, BN, LeakyReLU, 1x1 conv -> 1, ReLU,
summed over the 12x16 positions.  Smooth-L1 loss on the count, Adam 1e-3,
cosine schedule, batch 16, random flips; one thread.  Prints MAE / max
error every few epochs.  Needs Debian's python3-torch and python3-h5py.
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_f1(path, split=None):
    """The F1 images' masks at 96x128 and their counts (of one split)."""
    with h5py.File(path, 'r') as h:
        sel = h['focus'][()] == 1
        if split is not None:
            sel &= h['split'][()] == split
        idx = np.nonzero(sel)[0]
        m = h['masks'][idx.min():idx.max() + 1][idx - idx.min()].astype(np.float32)
        y = h['counts'][()][idx].astype(np.float32)
    n, c, hh, ww = m.shape
    m = m.reshape(n, c, 96, hh // 96, 128, ww // 128).mean(axis=(3, 5))
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
        self.head[-1].bias.data.fill_(50.0 / (12 * 16))

    def forward(self, x):
        return F.relu(self.head(self.body(x))).sum(dim=(1, 2, 3))


def main(argv):
    opts = {'--train': None, '--epochs': '60', '--width': '32', '--seed': '1'}
    pos = []
    it = iter(argv)
    for a in it:
        if a in opts:
            opts[a] = next(it)
        else:
            pos.append(a)
    if len(pos) < 1:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    torch.manual_seed(int(opts['--seed']))
    data = pos[0]
    xtr, ytr = load_f1(opts['--train']) if opts['--train'] else load_f1(data, 0)
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
        return '%.3f/%.1f' % (e.mean().item(), e.max().item())

    for ep in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr) - batch + 1, batch):
            b = perm[i:i + batch]
            x = xtr[b]
            if torch.rand(1) < 0.5:
                x = x.flip(3)
            if torch.rand(1) < 0.5:
                x = x.flip(2)
            loss = F.smooth_l1_loss(net(x), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if ep % 10 == 9 or ep == epochs - 1 or (opts['--train'] and ep % 3 == 2):
            print('epoch %d  train %s  ' % (ep + 1, score(xtr, ytr)) +
                  '  '.join('%s %s' % (n, score(*xy)) for n, xy in sets), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
