#!/usr/bin/env python3
"""A model of kernels/conv/causal_conv1d.cu's channel-last kernels, thread by thread, in numpy.

No GPU has run those kernels yet. This replays their index arithmetic as written (the grid's
unflatten, each thread's run of steps and register halo, the sequence cursor, the masks, the
block's fixed-order reduction into per-tile partials, the partials' sum) and checks the results
against a direct float64 reference, on rectangular and packed batches (empty sequences, one-step
ones, sequences crossing runs and tiles), W = 1..4, SiLU on and off. Run: python3 model.py
"""
import numpy as np

K_LANES, K_WARPS, K_STEPS = 32, 16, 8
K_TILE = K_WARPS * K_STEPS
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


def threads(B, D, T):
    n0, n1 = -(-D // K_LANES), -(-T // K_TILE)
    for block in range(n0 * n1 * B):
        i0, rest = block % n0, block // n0
        i1, i2 = rest % n1, rest // n1
        for tid in range(K_LANES * K_WARPS):
            d = i0 * K_LANES + tid % K_LANES
            t0 = i1 * K_TILE + (tid // K_LANES) * K_STEPS
            yield block, tid, dict(d=d, b=i2, tile=i1, t0=t0, t1=min(t0 + K_STEPS, T),
                                   active=d < D and t0 < T)


def taps(w, d, W):
    return [w[d, j - (K_TAPS - W)] if j - (K_TAPS - W) >= 0 else 0.0 for j in range(K_TAPS)]


def load_steps(x, b, d, t0, t_end, n):
    return [x[b, t0 - K_HALO + i, d] if 0 <= t0 - K_HALO + i < t_end else 0.0 for i in range(n)]


def fwd(x, w, bias, act, cu):  # x: (B, T, D)
    B, T, D = x.shape
    W = w.shape[1]
    out = np.full_like(x, np.nan)
    for _, _, r in threads(B, D, T):
        if not r["active"]:
            continue
        xs = load_steps(x, r["b"], r["d"], r["t0"], r["t1"], K_HALO + K_STEPS)
        w4, bb = taps(w, r["d"], W), (bias[r["d"]] if bias is not None else 0.0)
        cur = Cursor(cu, r["t0"], T)
        for i in range(K_STEPS):
            t = r["t0"] + i
            if t >= r["t1"]:
                break
            start = cur.at(t)[0]
            acc = bb + sum(w4[j] * (xs[i + j] if t - K_HALO + j >= start else 0.0)
                           for j in range(K_TAPS))
            out[r["b"], t, r["d"]] = silu(acc) if act else acc
    return out


def bwd(dout, x, w, bias, act, cu):
    B, T, D = x.shape
    W = w.shape[1]
    tiles = -(-T // K_TILE)
    dx = np.full_like(x, np.nan)
    partial = np.full((B * tiles, D, K_TAPS + 1), np.nan)
    sums = {}
    for block, tid, r in threads(B, D, T):
        acc = [0.0] * (K_TAPS + 1)
        if r["active"]:
            b, d, t0 = r["b"], r["d"], r["t0"]
            xs = load_steps(x, b, d, t0, T, K_HALO + K_STEPS + K_HALO)
            gs = [dout[b, t0 + i, d] if t0 + i < T else 0.0 for i in range(K_STEPS + K_HALO)]
            w4, bb = taps(w, d, W), (bias[d] if bias is not None else 0.0)
            if act:
                cur = Cursor(cu, t0, T)
                for i in range(K_STEPS + K_HALO):
                    t = t0 + i
                    if t >= T:
                        break
                    start = cur.at(t)[0]
                    pre = bb + sum(w4[j] * (xs[i + j] if t - K_HALO + j >= start else 0.0)
                                   for j in range(K_TAPS))
                    gs[i] *= silu_grad(pre)
            cur = Cursor(cu, t0, T)
            for i in range(K_STEPS):
                t = t0 + i
                if t >= r["t1"]:
                    break
                start, end = cur.at(t)
                dx[b, t, d] = sum(w4[j] * (gs[i + K_HALO - j] if t + K_HALO - j < end else 0.0)
                                  for j in range(K_TAPS))
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
    return dx, dweight, dbias


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
    out = fwd(x, w, bias, act, cu)
    dx, dw, db = bwd(dout, x, w, bias, act, cu)
    r_out, r_dx, r_dw, r_db = reference(x, w, bias, act, dout, cu)
    errs = [np.max(np.abs(a - b)) if a.size else 0.0
            for a, b in ((out, r_out), (dx, r_dx), (dw, r_dw))]
    if has_bias:
        errs.append(np.max(np.abs(db - r_db)))
    ok = all(e < 1e-9 for e in errs)
    print(f"{name:34s} B={B} D={D} T={T} W={W} silu={int(act)} bias={int(has_bias)}: "
          f"max |model - reference| {max(errs):.1e} {'ok' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    rng = np.random.default_rng(7)
    cases = [
        ("one run, one step", 1, 5, 1, 4, True, True),
        ("runs and a partial tile", 2, 33, 200, 4, True, True),
        ("two tiles, W = 3", 1, 7, 257, 3, False, True),
        ("W = 2, no bias", 3, 40, 70, 2, True, False),
        ("W = 1", 2, 9, 10, 1, False, True),
        ("shorter than the width", 2, 8, 2, 4, True, True),
        ("packed: empty and one-step", 1, 6, [0, 1, 9, 0, 1], 4, True, True),
        ("packed: across runs and tiles", 1, 35, [64, 65, 128, 63, 1, 130], 4, True, True),
        ("packed: many short, W = 3", 1, 3, [3, 7, 2, 11, 5, 1, 8, 4, 6, 2, 9, 3], 3, True, False),
    ]
    results = [check(*c, rng) for c in cases]
    print("all ok" if all(results) else "FAILED")
    raise SystemExit(0 if all(results) else 1)
