#!/usr/bin/env python3
"""wino_bf16_error.py - how far a Winograd F(4x4,3x3) convolution whose
products run on bf16 operands (the transformed input V and weights U
rounded to bf16, fp32 transforms and accumulation: what a vdpbf16ps
kernel would compute) lands from the exact result, beside oneDNN-style
direct bf16 (input and weights rounded, fp32 accumulation).

usage: python3 bench/wino_bf16_error.py [TILES [CHANNELS]]
Prints, per input distribution, the largest and mean error relative to
sum |x w| (the bound test_bf16 uses) and the RMS error relative to the RMS
output.  Needs numpy (Debian python3-numpy).  docs/PERFORMANCE.md quotes
its output for 2000 tiles and 256 channels.
"""
import sys

import numpy as np

BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], float)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], float)


def bf16(a):
    """round to nearest even bf16, returned as float64"""
    b = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def direct(d, g):
    out = np.zeros((d.shape[0], 4, 4))
    for i in range(4):
        for j in range(4):
            out[:, i, j] = np.einsum('tkab,kab->t', d[:, :, i:i + 3, j:j + 3], g)
    return out


def main():
    tiles = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    chans = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    rng = np.random.default_rng(0)
    for dist in ('relu', 'normal'):
        d = rng.standard_normal((tiles, chans, 6, 6))
        if dist == 'relu':
            d = np.maximum(d, 0)
        g = rng.standard_normal((chans, 3, 3)) * np.sqrt(2 / (9 * chans))
        exact, bound = direct(d, g), direct(np.abs(d), np.abs(g))
        dir_bf16 = direct(bf16(d), bf16(g))
        V = np.einsum('xa,tkab,yb->tkxy', BT, d, BT).astype(np.float32)
        U = np.einsum('xa,kab,yb->kxy', G, g, G).astype(np.float32)
        wino = np.einsum('ix,txy,jy->tij', AT, np.einsum('tkxy,kxy->txy', bf16(V), bf16(U)), AT)
        for name, o in (('direct bf16', dir_bf16), ('Winograd, bf16 V and U', wino)):
            e = np.abs(o - exact)
            print('%-7s %-24s error / sum|xw|: max %.2e mean %.2e; RMS error / RMS output %.2e'
                  % (dist, name, (e / bound).max(), (e / bound).mean(),
                     np.sqrt((e ** 2).mean() / (exact ** 2).mean())))


if __name__ == '__main__':
    main()
