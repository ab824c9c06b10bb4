#!/usr/bin/python3
"""cellcount runs <-> PyTorch, with h5py and torch alone (docs/PARAMS.md).

  to_pytorch.py RUN_DIR [--save FILE.pt] [--split test|val|train] [--data FILE.h5]
      Build the run's FPN and counter in PyTorch (docs/SPEC.md), load its
      checkpoints (fpn_best.h5 or counter_fpn_best.h5, counter_best.h5), and
      check PyTorch's forward against the numbers cellcount stored: every
      image of the run's `evaluate` table predictions/<split> in run.h5
      (count and calibrated sigma), read from the run's data set.  Exit 1 when
      a count or sigma differs by more than --tol (relative, with an absolute
      floor of --tol).  --save writes {'state_dict', 'config', 'sigma_scale',
      'sigma_per_count'} (config = the text of RUN_DIR/config.ini; the
      calibration sigma_cal = sqrt((scale sigma)^2 + (per_count count)^2))
      for torch.load.

  to_pytorch.py --to-cellcount STATE_DICT.pt EXPERIMENT.ini OUT_DIR [--size WxH]
      The way back: a PyTorch state_dict (keys 'fpn.<path>' and
      'counter.<path>' with '.' for '/', as --save writes; or a dict with a
      'state_dict' entry) and the experiment file that describes the models
      -> OUT_DIR/fpn_best.h5 (counter_fpn_best.h5 with
      counter.finetune_fpn), OUT_DIR/counter_best.h5, OUT_DIR/config.ini and,
      when a sigma calibration is known (--sigma-scale and --sigma-per-count,
      or the one --save stored), OUT_DIR/run.h5 with it; `cellcount count --run OUT_DIR` and
      `cellcount evaluate --out OUT_DIR` load them.  The state_dict is first
      loaded strictly into the PyTorch models built from the experiment file,
      so a mismatch is reported by name here, not by cellcount.

Needs /usr/bin/python3 with Debian's python3-torch and python3-h5py.  Not a
build or CI dependency of cellcount (tests/test_to_pytorch.sh skips without).
"""
import argparse
import configparser
import os
import shutil
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - reported, not a crash
    sys.exit('to_pytorch.py needs h5py, numpy and torch (Debian: python3-h5py python3-torch): %s'
             % e)

SLOPE = 0.01        # LeakyReLU slope (SPEC conventions)
EPS = 1e-5          # BatchNorm eps

VGG = {
    'vgg11': [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
    'vgg13': [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
    'vgg16': [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
              512, 512, 512, 'M'],
    'vgg19': [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
              512, 512, 512, 512, 'M'],
}


def lrelu(x):
    return F.leaky_relu(x, SLOPE)


def bn2d(c):
    return nn.BatchNorm2d(c, eps=EPS, momentum=0.1)


# ---------------------------------------------------------------- FPN ----
class ConvBN(nn.Module):
    """conv3x3 (pad 1, bias) + BN + LeakyReLU: paths .../conv, .../bn."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = bn2d(cout)

    def forward(self, x):
        return lrelu(self.bn(self.conv(x)))


class Head(nn.Module):
    """conv1+bn1+act -> conv2+bn2+act -> conv3; ReLU at the end for the mean."""

    def __init__(self, d, relu):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(d, 2 * d, 3, padding=1), bn2d(2 * d)
        self.conv2, self.bn2 = nn.Conv2d(2 * d, 2 * d, 3, padding=1), bn2d(2 * d)
        self.conv3 = nn.Conv2d(2 * d, 1, 3, padding=1)
        self.relu = relu

    def forward(self, x):
        x = lrelu(self.bn1(self.conv1(x)))
        x = lrelu(self.bn2(self.conv2(x)))
        x = self.conv3(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """SPEC "FPN": stem, avg-pool pyramid, top-down path with bilinear x2
    (half-pixel centres, align_corners=False), two heads per level."""

    def __init__(self, depth, width, cin):
        super().__init__()
        self.depth, self.width = depth, width
        self.stem = ConvBN(cin, 1)
        self.lateral = nn.ModuleDict({str(i): ConvBN(1, width) for i in range(1, depth)})
        self.heads = nn.ModuleDict({
            'mean': nn.ModuleList([Head(width, True) for _ in range(depth)]),
            'logvar': nn.ModuleList([Head(width, False) for _ in range(depth)])})

    def forward(self, x):
        """Means and log-variances, coarsest level first."""
        if x.shape[-2] % (1 << self.depth) or x.shape[-1] % (1 << self.depth):
            raise ValueError('FPN input %s: H and W must be divisible by %d'
                             % (tuple(x.shape), 1 << self.depth))
        p = [self.stem(x)]
        for _ in range(self.depth):
            p.append(F.avg_pool2d(p[-1], 2))
        u = [p[self.depth].expand(-1, self.width, -1, -1)]
        for i in range(1, self.depth):
            up = F.interpolate(u[-1], scale_factor=2, mode='bilinear', align_corners=False)
            u.append(up + self.lateral[str(i)](p[self.depth - i]))
        means = [self.heads['mean'][i](u[i]) for i in range(self.depth)]
        lvars = [self.heads['logvar'][i](u[i]) for i in range(self.depth)]
        return means, lvars


# ------------------------------------------------------------ counter ----
def div(c, width_div):
    return max(1, c // width_div)


class CountHead(nn.Module):
    def __init__(self, nfeat, width_div, relu):
        super().__init__()
        a, b = div(1024, width_div), div(512, width_div)
        self.fc1, self.bn1 = nn.Linear(nfeat, a), nn.BatchNorm1d(a, eps=EPS)
        self.fc2, self.bn2 = nn.Linear(a, b), nn.BatchNorm1d(b, eps=EPS)
        self.fc3 = nn.Linear(b, 1)
        self.relu = relu

    def forward(self, x):
        x = lrelu(self.bn1(self.fc1(x)))
        x = lrelu(self.bn2(self.fc2(x)))
        x = self.fc3(x)
        return F.relu(x) if self.relu else x


class DensityHead(nn.Module):
    """vgg11_density's count (models/counter.h): a density per position,
    relu(conv2(lrelu(bn1(conv1(f))))) with 1x1 convs F -> F/2 -> 1, summed."""

    def __init__(self, nfeat):
        super().__init__()
        hid = max(1, nfeat // 2)
        self.conv1, self.bn1 = nn.Conv2d(nfeat, hid, 1), bn2d(hid)
        self.conv2 = nn.Conv2d(hid, 1, 1)

    def forward(self, f):
        d = F.relu(self.conv2(lrelu(self.bn1(self.conv1(f)))))
        return d.sum(dim=(2, 3)).reshape(-1, 1)


class LReLU(nn.Module):
    def forward(self, x):
        return lrelu(x)


def vgg_features(arch, cin, h, w, width_div, upto=None):
    """torchvision's vgg*_bn.features numbering: conv j, BN j+1, act j+2, pool
    (the first `upto` items of the configuration, all by default)."""
    layers, c = [], cin
    for v in VGG[arch][:upto]:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
            h, w = h // 2, w // 2
        else:
            o = div(v, width_div)
            layers += [nn.Conv2d(c, o, 3, padding=1), bn2d(o), LReLU()]
            c = o
    if h < 1 or w < 1:
        raise ValueError('%s: counter input too small' % arch)
    return nn.Sequential(*layers), c * h * w


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = bn2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                            bn2d(cout))

    def forward(self, x):
        y = lrelu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return lrelu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """models/resnet.c: 3x3 stem + 2x2 max pool, 4 stages of 2 basic blocks."""

    def __init__(self, cin, width_div):
        super().__init__()
        c0 = div(64, width_div)
        self.conv1, self.bn1 = nn.Conv2d(cin, c0, 3, 1, 1, bias=False), bn2d(c0)
        c = c0
        for s, width in enumerate([64, 128, 256, 512]):
            co = div(width, width_div)
            blocks = []
            for b in range(2):
                blocks.append(Block(c, co, 2 if s > 0 and b == 0 else 1))
                c = co
            setattr(self, 'layer%d' % (s + 1), nn.Sequential(*blocks))
        self.nfeat = c

    def forward(self, x):
        x = F.max_pool2d(lrelu(self.bn1(self.conv1(x))), 2, 2)
        for s in range(1, 5):
            x = getattr(self, 'layer%d' % s)(x)
        return x.mean(dim=(2, 3))


class Counter(nn.Module):
    def __init__(self, arch, cin, h, w, width_div, head_means=False):
        super().__init__()
        self.gap = arch == 'vgg11_gap'
        self.density = arch == 'vgg11_density'
        self.head_means = head_means
        if arch in VGG:
            self.features, nfeat = vgg_features(arch, cin, h, w, width_div)
        elif self.gap or self.density:
            # VGG-11 features (density: up to the third pool, the map kept),
            # then averaged over positions for the heads (models/vgg.c)
            self.features, _ = vgg_features('vgg11', cin, h, w, width_div,
                                            upto=7 if self.density else None)
            nfeat = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        elif arch == 'resnet18':
            self.features = ResNet18(cin, width_div)
            nfeat = self.features.nfeat
        else:
            raise ValueError('unknown counter.arch %r (known: %s, vgg11_gap, vgg11_density, '
                             'resnet18)' % (arch, ', '.join(VGG)))
        count = DensityHead(nfeat) if self.density else None
        # counter.head_means: the heads also read each input channel's mean
        nfeat += cin if head_means else 0
        self.heads = nn.ModuleDict({'count': count or CountHead(nfeat, width_div, True),
                                    'logvar': CountHead(nfeat, width_div, False)})

    def forward(self, x):
        m = self.features(x)
        f = torch.flatten(m.mean(dim=(2, 3)) if self.gap or self.density else m, 1)
        if self.head_means:
            f = torch.cat([f, x.mean(dim=(2, 3))], 1)
        return self.heads['count'](m if self.density else f), self.heads['logvar'](f)


class CellCount(nn.Module):
    """FPN + counter as `cellcount count` runs them: the counter reads the
    FPN's finest mean mask, and/or the image area-averaged by 2."""

    def __init__(self, cfg, h, w):
        super().__init__()
        self.input = cfg['counter.input']
        cin = {'mask': 1, 'mask+image': 2, 'image': 1}[self.input]
        if self.input != 'image':
            self.fpn = FPN(cfg['fpn.depth'], cfg['fpn.width'], cfg['fpn.channels'])
        self.counter = Counter(cfg['counter.arch'], cin, h // 2, w // 2, cfg['counter.width_div'],
                               cfg['counter.head_means'])

    def forward(self, x):
        """x (N,Cin,H,W) in [0,1] -> count (N), log-variance (N)."""
        parts = []
        if self.input != 'image':
            means, _ = self.fpn(x)
            parts.append(means[-1])
        if self.input != 'mask':
            parts.append(F.avg_pool2d(x[:, :1], 2))
        c, lv = self.counter(torch.cat(parts, 1))
        return c[:, 0], lv[:, 0]


# -------------------------------------------------------- configuration ----
DEFAULTS = {'fpn.depth': 4, 'fpn.width': 128, 'fpn.channels': 1, 'counter.arch': 'vgg11',
            'counter.width_div': 1, 'counter.input': 'mask', 'counter.loss': 'nll',
            'counter.finetune_fpn': 'false', 'counter.head_means': 'false', 'data.file': ''}


def read_config(path):
    """The keys the models need from an experiment file (SPEC defaults for
    missing ones)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(';', '#'), interpolation=None)
    if not cp.read(path):
        sys.exit('%s: cannot read the experiment file' % path)
    cfg = {}
    for key, dflt in DEFAULTS.items():
        sec, k = key.split('.')
        v = cp.get(sec, k, fallback=None)
        cfg[key] = type(dflt)(v) if v is not None else dflt
    for k in ('counter.finetune_fpn', 'counter.head_means'):
        cfg[k] = str(cfg[k]).lower() in ('1', 'true', 'yes', 'on')
    return cfg


def data_path(cfg, run_dir, override):
    """data.file as given to training: as is, else relative to the run's parent."""
    for p in ([override] if override else [cfg['data.file'],
                                           os.path.join(run_dir, '..', cfg['data.file'])]):
        if p and os.path.exists(p):
            return p
    sys.exit('%s: the data set %r was not found (give --data FILE.h5)' % (run_dir, cfg['data.file']))


def fpn_file(cfg):
    return 'counter_fpn_best.h5' if cfg['counter.finetune_fpn'] else 'fpn_best.h5'


# --------------------------------------------------------- checkpoints ----
def read_checkpoint(path, prefix):
    """/params/<prefix>/... of a cellcount checkpoint as state_dict entries."""
    out = {}
    with h5py.File(path, 'r') as f:
        fmt = f.attrs.get('format')
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != 'cellcount-checkpoint':
            sys.exit('%s: not a cellcount checkpoint (format %r)' % (path, fmt))

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith(prefix + '/'):
                a = np.asarray(obj[()], dtype=np.float32)
                if name.endswith('/num_batches_tracked'):   # 1-element float32 here
                    out[name.replace('/', '.')] = torch.tensor(int(a.reshape(-1)[0]),
                                                               dtype=torch.int64)
                else:
                    out[name.replace('/', '.')] = torch.from_numpy(a.copy())
        f['params'].visititems(visit)
    return out


def write_checkpoint(path, state, prefix, source):
    """state_dict entries '<prefix>.*' -> /params/<prefix>/... (float32),
    atomically."""
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with h5py.File(tmp, 'w') as f:
        f.attrs['format'] = 'cellcount-checkpoint'
        f.attrs['format_version'] = np.int32(1)
        f.attrs['source'] = source
        n = 0
        for key, t in state.items():
            if not key.startswith(prefix + '.'):
                continue
            a = t.detach().cpu().numpy().astype(np.float32)
            if key.endswith('.num_batches_tracked'):
                a = a.reshape(1)
            f.create_dataset('params/' + key.replace('.', '/'), data=a)
            n += 1
    os.replace(tmp, path)
    return n


def write_run_file(path, scale, per_count, source):
    """A minimal run file (src/run/runlog.h) holding the sigma calibration that
    `cellcount count` applies (attributes counter.sigma_scale and
    counter.sigma_per_count: sigma = sqrt((scale raw)^2 + (per_count count)^2))."""
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with h5py.File(tmp, 'w') as f:
        # fixed-length NUL-terminated strings, as runlog writes and reads them
        for k, v in (('format', 'cellcount-run'), ('format_version', '1'),
                     ('counter.sigma_scale', '%.9g' % scale),
                     ('counter.sigma_per_count', '%.9g' % per_count), ('source', source)):
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(len(v.encode()) + 1)
            tid.set_strpad(h5py.h5t.STR_NULLTERM)
            f.attrs.create(k, np.bytes_(v.encode()), dtype=h5py.Datatype(tid))
    os.replace(tmp, path)


# -------------------------------------------------------------- modes ----
def build(cfg, h, w):
    torch.manual_seed(0)
    return CellCount(cfg, h, w).eval()


def check_run(a):
    run = a.run_dir
    cfg = read_config(os.path.join(run, 'config.ini'))
    data = data_path(cfg, run, a.data)
    with h5py.File(os.path.join(run, 'run.h5'), 'r') as f:
        table = 'predictions/' + a.split
        if table not in f:
            sys.exit('%s/run.h5 has no table %s: run `cellcount evaluate` (it stores every '
                     'image\'s prediction) first' % (run, table))
        g = f[table]
        idx = g['index'][:].astype(np.int64)
        want_c, want_s = g['count'][:], g['sigma'][:]
        def attr(k, default):
            v = f.attrs.get(k, default)
            return float(v.decode() if isinstance(v, bytes) else v)
        scale = attr('counter.sigma_scale', b'1')
        per_count = attr('counter.sigma_per_count', b'0')   # runs evaluated before it: 0
    with h5py.File(data, 'r') as d:
        images = d['images']
        n, c, h, w = images.shape
        order = np.argsort(idx)     # h5py reads rows in increasing order
        raw = images[idx[order]]
        x = np.empty_like(raw, dtype=np.float32)
        x[order] = raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
    model = build(cfg, h, w)
    state = {}
    if cfg['counter.input'] != 'image':
        state.update(read_checkpoint(os.path.join(run, fpn_file(cfg)), 'fpn'))
    state.update(read_checkpoint(os.path.join(run, 'counter_best.h5'), 'counter'))
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        counts, lvs = [], []
        for i in range(0, len(x), 16):
            cnt, lv = model(torch.from_numpy(x[i:i + 16]))
            counts.append(cnt.double().numpy())
            lvs.append(lv.double().numpy())
    got_c = np.concatenate(counts)
    got_s = np.hypot(scale * np.exp(0.5 * np.concatenate(lvs)), per_count * np.maximum(got_c, 0))
    bad = 0
    # Non-finite numbers compare as "not greater than tol", which would pass
    # anything: they fail the check instead, named.
    for name, got, want in (('count', got_c, want_c), ('sigma', got_s, want_s)):
        nf = int(np.sum(~np.isfinite(got)) + np.sum(~np.isfinite(want)))
        if nf and (name == 'count' or cfg['counter.loss'] != 'mse'):
            print('FAIL: %d non-finite %s values (PyTorch %d, cellcount %d): nothing to compare'
                  % (nf, name, int(np.sum(~np.isfinite(got))), int(np.sum(~np.isfinite(want)))))
            bad += nf
    err_c = np.abs(got_c - want_c) / np.maximum(1.0, np.abs(want_c))
    print('%s: %d images of the %s split, %dx%d; PyTorch vs cellcount count: max |diff| %.3g '
          '(relative %.3g)' % (run, len(x), a.split, w, h, np.max(np.abs(got_c - want_c)),
                               np.max(err_c)))
    bad += int(np.sum(err_c > a.tol))
    spread = float(np.std(want_c))
    print('  cellcount\'s counts: mean %.4g, spread (std) %.4g' % (np.mean(want_c), spread))
    if spread < a.require_spread:
        print('FAIL: the counts hardly vary (std %.3g < --require-spread %g): a constant model '
              'checks little' % (spread, a.require_spread))
        bad += 1
    if cfg['counter.loss'] != 'mse':
        err_s = np.abs(got_s - want_s) / np.maximum(1.0, np.abs(want_s))
        print('  sigma (calibration: scale %.6g, per count %.6g): max |diff| %.3g (relative %.3g)'
              % (scale, per_count, np.max(np.abs(got_s - want_s)), np.max(err_s)))
        bad += int(np.sum(err_s > a.tol))
    if a.save:
        with open(os.path.join(run, 'config.ini')) as f:
            text = f.read()
        torch.save({'state_dict': model.state_dict(), 'config': text, 'sigma_scale': scale,
                    'sigma_per_count': per_count}, a.save)
        print('wrote %s (%d tensors)' % (a.save, len(model.state_dict())))
    if bad:
        print('FAIL: %d numbers are non-finite or differ by more than %g' % (bad, a.tol))
        return 1
    print('OK: PyTorch reproduces cellcount within %g' % a.tol)
    return 0


def to_cellcount(a):
    sd_path, exp, out = a.to_cellcount
    cfg = read_config(exp)
    if a.size:
        w, h = (int(v) for v in a.size.lower().split('x'))
    else:
        p = data_path(cfg, os.path.dirname(exp) or '.', None)
        with h5py.File(p, 'r') as d:
            h, w = d['images'].shape[2:]
    obj = torch.load(sd_path, map_location='cpu')
    state = obj['state_dict'] if isinstance(obj, dict) and 'state_dict' in obj else obj
    model = build(cfg, h, w)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit('%s does not fit the models of %s: missing %s; unexpected %s'
                 % (sd_path, exp, missing[:10], unexpected[:10]))
    os.makedirs(out, exist_ok=True)
    full = model.state_dict()
    n = 0
    if cfg['counter.input'] != 'image':
        n += write_checkpoint(os.path.join(out, fpn_file(cfg)), full, 'fpn', sd_path)
    n += write_checkpoint(os.path.join(out, 'counter_best.h5'), full, 'counter', sd_path)
    shutil.copyfile(exp, os.path.join(out, 'config.ini'))
    scale = a.sigma_scale
    if scale is None and isinstance(obj, dict) and 'sigma_scale' in obj:
        scale = float(obj['sigma_scale'])
    per_count = a.sigma_per_count
    if per_count is None and isinstance(obj, dict) and 'sigma_per_count' in obj:
        per_count = float(obj['sigma_per_count'])
    if scale is not None:
        write_run_file(os.path.join(out, 'run.h5'), scale, per_count or 0.0, sd_path)
    print('wrote %d tensors into %s (%s, counter_best.h5, config.ini)'
          % (n, out, fpn_file(cfg) if cfg['counter.input'] != 'image' else '-'))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('run_dir', nargs='?')
    p.add_argument('--split', default='test', choices=['train', 'val', 'test'])
    p.add_argument('--data', help='the data set, when config.ini\'s data.file is elsewhere')
    p.add_argument('--save', help='write the state_dict and config here (torch.save)')
    p.add_argument('--tol', type=float, default=1e-3,
                   help='allowed relative difference (absolute below 1), default 1e-3')
    p.add_argument('--require-spread', type=float, default=0,
                   help='fail when the std of the counts is below this (a near-constant '
                        'model would check little)')
    p.add_argument('--to-cellcount', nargs=3, metavar=('STATE_DICT', 'EXPERIMENT', 'OUT_DIR'))
    p.add_argument('--sigma-scale', type=float,
                   help='calibration factor of sigma for --to-cellcount (default: the '
                        '\'sigma_scale\' that --save stored, else none: raw sigma)')
    p.add_argument('--sigma-per-count', type=float,
                   help='the calibration\'s per-count term for --to-cellcount (default: the '
                        '\'sigma_per_count\' that --save stored, else 0)')
    p.add_argument('--size', help='WxH of the FPN input for --to-cellcount (default: the '
                                  'size of the experiment\'s data set)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.to_cellcount:
        return to_cellcount(a)
    if not a.run_dir:
        p.error('give RUN_DIR or --to-cellcount')
    return check_run(a)


if __name__ == '__main__':
    sys.exit(main())
