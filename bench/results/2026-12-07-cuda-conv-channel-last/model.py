#!/usr/bin/env python3
"""A model of kernels/conv/causal_conv1d.cu's channel-last kernels, thread by thread, in numpy.

No GPU has run those kernels yet. This replays their index arithmetic as written (the grid's
unflatten, each thread's runs of steps and register halos, the sequence cursor, the masks, the
block's fixed-order reduction into per-tile partials, the partials' sum) on strided channel-last
views (rows wider than D, as the tests pass them) and checks the results against a direct float64
reference, on rectangular and packed batches (empty sequences, one-step ones, sequences crossing
runs and tiles), W = 1..4, SiLU on and off. Run: python3 model.py (needs numpy)
"""
import numpy as np

K_LANES, K_WARPS, K_STEPS = 32, 16, 8
K_FWD_RUNS, K_BWD_RUNS = 1, 8  # runs per warp; the backward's tile is kTile = 1024 steps
K_TILE = 1024
K_TAPS, K_HALO = 4, 3


def silu(x):
    return x / (1 + np.exp(-x))


def silu_grad(x):
    s = 1 / (1 + np.exp(-x))
    return s * (1 + x * (1 - s))


def sequence_of(cu, t):  # kernels/common/varlen.cuh
    lo, hi = 0, len(cu) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cu[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo


class Cursor:
    def __init__(self, cu, t, T):
        self.cu = cu
        self.n = sequence_of(cu, t) if cu is not None else 0
        self.seq = (cu[self.n], cu[self.n + 1]) if cu is not None else (0, T)

    def at(self, t):
        while t >= self.seq[1]:
            self.n += 1
            self.seq = (self.cu[self.n], self.cu[self.n + 1])
        return self.seq


def threads(B, D, T, runs):
    """Each thread of the grid over (ceil(D / 32), tiles, B) with its channel and runs:
    last_block and run_start."""
    tile_steps = runs * K_WARPS * K_STEPS
    n0, n1 = -(-D // K_LANES), -(-T // tile_steps)
    for block in range(n0 * n1 * B):
        i0, rest = block % n0, block // n0
        i1, i2 = rest % n1, rest // n1
        for tid in range(K_LANES * K_WARPS):
            d = i0 * K_LANES + tid % K_LANES
            starts = [i1 * tile_steps + ((tid // K_LANES) * runs + r) * K_STEPS
                      for r in range(runs)]
            yield block, tid, dict(d=d, b=i2, tile=i1, starts=starts)


class Strided:
    """An activation as the kernels see it: a flat buffer, element (b, t, d) at
    b * at_b + d + t * at_t, the rows R >= D wide with D columns from `col` on (ConvStrides of a
    channel-last view); the other columns hold `fill`, which no read may return."""

    def __init__(self, a, extra, col, fill):
        B, T, D = a.shape
        self.R = D + extra
        self.buf = np.full(B * T * self.R, fill)
        self.at_b, self.at_t, self.base = T * self.R, self.R, col
        for b in range(B):
            for t in range(T):
                self[b, t, slice(0, D)] = a[b, t]

    def __getitem__(self, i):
        b, t, d = i
        if isinstance(d, slice):
            return self.buf[self.base + b * self.at_b + t * self.at_t + np.arange(d.start, d.stop)]
        return self.buf[self.base + b * self.at_b + d + t * self.at_t]

    def __setitem__(self, i, v):
        b, t, d = i
        if isinstance(d, slice):
            self.buf[self.base + b * self.at_b + t * self.at_t + np.arange(d.start, d.stop)] = v
        else:
            self.buf[self.base + b * self.at_b + d + t * self.at_t] = v

    def read(self, B, T, D):
        return np.array([[self[b, t, slice(0, D)] for t in range(T)] for b in range(B)])


def taps(w, d, W):
    return [w[d, j - (K_TAPS - W)] if j - (K_TAPS - W) >= 0 else 0.0 for j in range(K_TAPS)]


def load_steps(x, b, d, t0, t_end, n):
    return [x[b, t0 - K_HALO + i, d] if 0 <= t0 - K_HALO + i < t_end else 0.0 for i in range(n)]


def conv_pre(w4, bb, window, t, start):
    acc = bb
    for j in range(K_TAPS):
        acc += w4[j] * (window[j] if t - K_HALO + j >= start else 0.0)
    return acc


def fwd(x, w, bias, act, cu, B, T, D, out):  # x, out: Strided (B, T, D)
    W = w.shape[1]
    for _, _, r in threads(B, D, T, K_FWD_RUNS):
        t0 = r["starts"][0]
        t1 = min(t0 + K_STEPS, T)
        if r["d"] >= D or t0 >= T:
            continue
        xs = load_steps(x, r["b"], r["d"], t0, t1, K_HALO + K_STEPS)
        w4, bb = taps(w, r["d"], W), (bias[r["d"]] if bias is not None else 0.0)
        cur = Cursor(cu, t0, T)
        for i in range(K_STEPS):
            t = t0 + i
            if t >= t1:
                break
            pre = conv_pre(w4, bb, xs[i:], t, cur.at(t)[0])
            out[r["b"], t, r["d"]] = silu(pre) if act else pre


def bwd(dout, x, w, bias, act, cu, B, T, D, dx):  # dout, x, dx: Strided (B, T, D)
    W = w.shape[1]
    tiles = -(-T // K_TILE)
    partial = np.full((B * tiles, D, K_TAPS + 1), np.nan)
    sums = {}
    for block, tid, r in threads(B, D, T, K_BWD_RUNS):
        acc = [0.0] * (K_TAPS + 1)
        b, d = r["b"], r["d"]
        if d < D:
            w4, bb = taps(w, d, W), (bias[d] if bias is not None else 0.0)
        for t0 in r["starts"]:
            t1 = min(t0 + K_STEPS, T)
            if d >= D or t0 >= T:
                break
            xs = load_steps(x, b, d, t0, T, K_HALO + K_STEPS + K_HALO)
            gs = [dout[b, t0 + i, d] if t0 + i < T else 0.0 for i in range(K_STEPS + K_HALO)]
            if act:
                cur = Cursor(cu, t0, T)
                for i in range(K_STEPS + K_HALO):
                    t = t0 + i
                    if t >= T:
                        break
                    gs[i] *= silu_grad(conv_pre(w4, bb, xs[i:], t, cur.at(t)[0]))
            cur = Cursor(cu, t0, T)
            for i in range(K_STEPS):
                t = t0 + i
                if t >= t1:
                    break
                start, end = cur.at(t)
                dxv = 0.0
                for j in range(K_TAPS):
                    dxv += w4[j] * (gs[i + K_HALO - j] if t + K_HALO - j < end else 0.0)
                dx[b, t, d] = dxv
                for j in range(K_TAPS):
                    acc[j] += gs[i] * (xs[i + j] if t - K_HALO + j >= start else 0.0)
                acc[K_TAPS] += gs[i]
        sums[(block, tid // K_LANES, tid % K_LANES)] = (r, acc)
    for (block, warp, lane), (r, _) in sums.items():
        if warp != 0 or r["d"] >= D:
            continue
        for j in range(K_TAPS + 1):
            partial[(r["b"] * tiles + r["tile"]), r["d"], j] = sum(
                sums[(block, w_, lane)][1][j] for w_ in range(K_WARPS))
    M = B * tiles
    dweight = np.zeros((D, W))
    dbias = np.zeros(D)
    for d in range(D):  # causal_conv1d_sum_partials_kernel
        for slot in range(W + 1):
            j = K_TAPS if slot == W else slot + (K_TAPS - W)
            s = sum(partial[m, d, j] for m in range(M))
            if slot == W:
                dbias[d] = s
            else:
                dweight[d, slot] = s
    return dweight, dbias


def reference(x, w, bias, act, dout, cu):  # per sequence, float64, by the definition
    B, T, D = x.shape
    W = w.shape[1]
    out, dx = np.zeros_like(x), np.zeros_like(x)
    dw, db = np.zeros_like(w), np.zeros(D)
    seqs = [(b, 0, T) for b in range(B)] if cu is None else \
        [(0, cu[n], cu[n + 1]) for n in range(len(cu) - 1)]
    for b, s, e in seqs:
        xs = x[b, s:e]
        L = e - s
        pre = np.zeros((L, D)) + (bias if bias is not None else 0)
        for k in range(W):  # out[t] += w[:, k] * x[t - (W - 1) + k]
            sh = W - 1 - k
            pre[sh:] += w[:, k] * xs[:L - sh] if sh < L else 0
        out[b, s:e] = silu(pre) if act else pre
        g = dout[b, s:e] * (silu_grad(pre) if act else 1)
        for k in range(W):
            sh = W - 1 - k
            if sh < L:
                dx[b, s:e][:L - sh] += w[:, k] * g[sh:]
                dw[:, k] += (g[sh:] * xs[:L - sh]).sum(0)
        db += g.sum(0)
    return out, dx, dw, db


def check(name, B, D, lengths_or_T, W, act, has_bias, rng):
    cu = None
    if isinstance(lengths_or_T, list):
        cu = np.concatenate([[0], np.cumsum(lengths_or_T)]).astype(int)
        T = int(cu[-1])
    else:
        T = lengths_or_T
    x = rng.uniform(-2, 2, (B, T, D))
    dout = rng.uniform(-1, 1, (B, T, D))
    w = rng.uniform(-1, 1, (D, W))
    bias = rng.uniform(-1, 1, D) if has_bias else None
    # As the tests lay them out: x and dout inside wider rows holding a huge fill, out and dx
    # poisoned (NaN) inside wider rows whose other columns must stay NaN.
    xv, dv = Strided(x, 5, 2, 1e3), Strided(dout, 1, 0, -1e3)
    outv, dxv = Strided(np.full_like(x, np.nan), 3, 1, np.nan), Strided(np.full_like(x, np.nan), 3, 1, np.nan)
    fwd(xv, w, bias, act, cu, B, T, D, outv)
    dw, db = bwd(dv, xv, w, bias, act, cu, B, T, D, dxv)
    out, dx = outv.read(B, T, D), dxv.read(B, T, D)
    untouched = all(np.isnan(np.delete(v.buf.reshape(-1, v.R), np.arange(1, D + 1), axis=1)).all()
                    for v in (outv, dxv))
    r_out, r_dx, r_dw, r_db = reference(x, w, bias, act, dout, cu)
    errs = [np.max(np.abs(a - b)) if a.size else 0.0
            for a, b in ((out, r_out), (dx, r_dx), (dw, r_dw))]
    if has_bias:
        errs.append(np.max(np.abs(db - r_db)))
    ok = all(e < 1e-9 for e in errs) and untouched
    print(f"{name:34s} B={B} D={D} T={T} W={W} silu={int(act)} bias={int(has_bias)}: "
          f"max |model - reference| {max(errs):.1e} {'ok' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    rng = np.random.default_rng(7)
    cases = [
        ("one run, one step", 1, 5, 1, 4, True, True),
        ("runs and a partial tile", 2, 33, 200, 4, True, True),
        ("two tiles, W = 3", 1, 7, 257, 3, False, True),
        ("backward tiles, channels past a warp", 2, 45, 1100, 4, True, True),
        ("W = 2, no bias", 3, 40, 70, 2, True, False),
        ("W = 1", 2, 9, 10, 1, False, True),
        ("shorter than the width", 2, 8, 2, 4, True, True),
        ("packed: empty and one-step", 1, 6, [0, 1, 9, 0, 1], 4, True, True),
        ("packed: across runs and tiles", 1, 35, [64, 65, 128, 63, 1, 130], 4, True, True),
        ("packed: many short, W = 3", 1, 3, [3, 7, 2, 11, 5, 1, 8, 4, 6, 2, 9, 3], 3, True, False),
        ("packed: across backward tiles", 1, 33, [0, 1000, 1, 0, 100, 30], 4, True, True),
    ]
    results = [check(*c, rng) for c in cases]
    print("all ok" if all(results) else "FAILED")
    raise SystemExit(0 if all(results) else 1)
