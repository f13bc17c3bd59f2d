#!/usr/bin/python3
"""Outside reference for `longctx op`, used by tests/test_cli.cpp.

    cli_reference.py OP IN.safetensors OUT.safetensors [--backward]

Reads the same input file the CLI reads (with its own safetensors reader, independent of the
library's), computes the op with numpy, and writes for every output NAME two float64 tensors:
NAME, computed in long double (the oracle), and NAME.naive, computed in the inputs' precision
(float32 for f32/bf16/f16 inputs, float64 for f64) — the naive implementation of the 2x rule.
Needs only numpy (Debian's python3-numpy).
"""
import json
import sys

import numpy as np

# ---- safetensors, written from the format description --------------------------------------------

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                "BF16": np.uint16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=np.dtype(NUMPY_DTYPES[info["dtype"]]).newbyteorder("<"))
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (a.reshape(info["shape"]), info["dtype"])
    return tensors, metadata


def write_safetensors(path, arrays):
    header, blobs, offset = {}, [], 0
    for name in sorted(arrays):
        blob = np.ascontiguousarray(arrays[name], dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(np.shape(arrays[name])),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


# ---- ops: each takes (tensors as arrays of type T, options, T, backward) -> {name: array} ----------

def rmsnorm(t, opts, T, backward):
    x, w = t["x"].astype(T), t["weight"].astype(T)
    eps = T(float(opts.get("eps", "1e-6")))
    C = x.shape[-1]
    rstd = T(1) / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) / T(C) + eps)
    if not backward:
        return {"out": x * rstd * w, "rstd": rstd.reshape(-1)}
    dy = t["dout"].astype(T)
    dot = np.sum(dy * w * x, axis=-1, keepdims=True)
    dx = dy * w * rstd - x * dot * rstd ** 3 / T(C)
    dweight = np.sum((dy * x * rstd).reshape(-1, C), axis=0)
    return {"dx": dx, "dweight": dweight}


def linear(t, opts, T, backward):
    x, w = t["x"].astype(T), t["weight"].astype(T)
    if not backward:
        out = x @ w.T
        return {"out": out + t["bias"].astype(T) if "bias" in t else out}
    dy = t["dout"].astype(T)
    cin, cout = x.shape[-1], w.shape[0]
    grads = {"dx": dy @ w, "dweight": dy.reshape(-1, cout).T @ x.reshape(-1, cin)}
    if "bias" in t:
        grads["dbias"] = np.sum(dy.reshape(-1, cout), axis=0)
    return grads


def rope(t, opts, T, backward):
    x = t["dout" if backward else "x"].astype(T)
    B, L, H, D = x.shape
    theta = float(opts.get("theta", "10000"))
    pos = t["positions"] if "positions" in t else np.broadcast_to(np.arange(L), (B, L))
    # Angles in double (long double for the oracle), as the op's contract says; rotation in T.
    A = np.longdouble if T == np.longdouble else np.float64
    freq = A(theta) ** (-A(2) * np.arange(D // 2).astype(A) / A(D))
    angle = pos.astype(A)[:, :, None, None] * freq  # (B, L, 1, D/2)
    cos, sin = np.cos(angle).astype(T), np.sin(angle).astype(T)
    if backward:
        sin = -sin
    a, b = x[..., : D // 2], x[..., D // 2:]
    out = np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    return {"dx": out} if backward else {"out": out}


def swiglu(t, opts, T, backward):
    g, u = t["gate"].astype(T), t["up"].astype(T)
    s = T(1) / (T(1) + np.exp(-g))
    if not backward:
        return {"out": g * s * u}
    dy = t["dout"].astype(T)
    return {"dgate": dy * u * s * (T(1) + g * (T(1) - s)), "dup": dy * g * s}


def embedding(t, opts, T, backward):
    tokens, table = t["tokens"], t["table"].astype(T)
    if not backward:
        return {"out": table[tokens]}
    dtable = np.zeros_like(table)
    np.add.at(dtable, tokens.reshape(-1), t["dout"].astype(T).reshape(tokens.size, table.shape[1]))
    return {"dtable": dtable}


def cross_entropy(t, opts, T, backward):
    logits, targets = t["logits"].astype(T), t["targets"]
    ignore = int(opts.get("ignore_index", "-100"))
    V = logits.shape[-1]
    z, y = logits.reshape(-1, V), targets.reshape(-1)
    m = np.max(z, axis=1, keepdims=True)
    lse = (m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True)))[:, 0]
    labelled = y != ignore
    L = int(np.sum(labelled))
    rows = np.nonzero(labelled)[0]
    if not backward:
        total = np.sum(lse[rows] - z[rows, y[rows]]) if L else T(0)
        loss = total / T(L) if L else T(0)
        return {"loss": np.array([loss], dtype=T), "lse": lse.reshape(targets.shape)}
    dloss = T(t["dloss"].reshape(-1)[0])
    d = np.zeros_like(z)
    if L:
        p = np.exp(z[rows] - lse[rows, None])
        p[np.arange(len(rows)), y[rows]] -= T(1)
        d[rows] = dloss * p / T(L)
    return {"dlogits": d.reshape(logits.shape)}


def adamw(t, opts, T, backward):
    f = lambda k, d: T(float(opts.get(k, d)))
    lr, b1, b2 = f("lr", "1e-3"), f("beta1", "0.9"), f("beta2", "0.999")
    eps, wd, scale = f("eps", "1e-8"), f("weight_decay", "1e-2"), f("grad_scale", "1")
    step = int(opts.get("step", "1"))
    p, m, v = t["param"].astype(T), t["m"].astype(T), t["v"].astype(T)
    g = t["grad"].astype(T) * scale
    p = p * (T(1) - lr * wd)
    m = b1 * m + (T(1) - b1) * g
    v = b2 * v + (T(1) - b2) * g * g
    p = p - lr / (T(1) - b1 ** step) * m / (np.sqrt(v) / np.sqrt(T(1) - b2 ** step) + eps)
    out = {"param": p, "m": m, "v": v}
    if "param_copy" in t:
        out["param_copy"] = p
    return out


def option(opts, key, default):
    """A scalar option from "__metadata__", read as JSON (true, 64, 0.5), or the op's default."""
    return json.loads(opts[key]) if key in opts else default


def f32_option(opts, key, default, T):
    """A float option of a params struct with a float field: the op sees it rounded to float32."""
    return T(np.float32(option(opts, key, default)))


# ---- attention (include/longctx/ops/attention.h) ---------------------------------------------------

def attention_params(opts, D, T):
    scale = f32_option(opts, "softmax_scale", 0.0, T)
    if scale == 0:
        scale = T(1) / np.sqrt(T(D))
    left, right = option(opts, "window_left", -1), option(opts, "window_right", -1)
    if option(opts, "causal", False):
        right = 0
    return scale, left, right, f32_option(opts, "softcap", 0.0, T)


def attend(q, k, v, scale, left, right, softcap, T):
    """One (batch, head): q (Tq, D), k, v (Tk, D). Returns out, lse and the pieces the backward
    needs: the visibility mask, the probabilities and tanh of the capped scores."""
    Tq, Tk = q.shape[0], k.shape[0]
    s = (q @ k.T) * scale
    th = None
    if softcap > 0:
        th = np.tanh(s / softcap)
        s = softcap * th
    i, j = np.arange(Tq)[:, None], np.arange(Tk)[None, :]
    diag = i + Tk - Tq  # bottom-right aligned
    visible = np.ones((Tq, Tk), dtype=bool)
    if left >= 0:
        visible &= j >= diag - left
    if right >= 0:
        visible &= j <= diag + right
    m = np.max(np.where(visible, s, T(-np.inf)), axis=1, initial=T(-np.inf), keepdims=True)
    m = np.where(np.isfinite(m), m, T(0))
    e = np.where(visible, np.exp(s - m), T(0))
    l = np.sum(e, axis=1, keepdims=True)
    p = e / np.where(l > 0, l, T(1))
    lse = np.where(l[:, 0] > 0, m[:, 0] + np.log(np.where(l[:, 0] > 0, l[:, 0], T(1))),
                   T(-np.inf))
    return p @ v, lse, p, th


def attention(t, opts, T, backward):
    q, k, v = t["q"].astype(T), t["k"].astype(T), t["v"].astype(T)
    B, Tq, H, D = q.shape
    Hkv = k.shape[2]
    scale, left, right, softcap = attention_params(opts, D, T)
    out, lse = np.zeros_like(q), np.zeros((B, H, Tq), dtype=T)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b in range(B):
        for h in range(H):
            g = h // (H // Hkv)
            qh, kh, vh = q[b, :, h], k[b, :, g], v[b, :, g]
            o, lse[b, h], p, th = attend(qh, kh, vh, scale, left, right, softcap, T)
            out[b, :, h] = o
            if not backward:
                continue
            do = t["dout"].astype(T)[b, :, h]
            dp = do @ vh.T
            ds = p * (dp - np.sum(do * o, axis=1, keepdims=True))
            if th is not None:
                ds = ds * (T(1) - th * th)
            dq[b, :, h] = (ds @ kh) * scale
            dk[b, :, g] += (ds.T @ qh) * scale
            dv[b, :, g] += p.T @ do
    if backward:
        return {"dq": dq, "dk": dk, "dv": dv}
    return {"out": out, "lse": lse}


def attention_decode(t, opts, T, backward):
    q = t["q"].astype(T)
    k_cache, v_cache = t["k_cache"].astype(T).copy(), t["v_cache"].astype(T).copy()
    lens = t["cache_seqlens"]
    append = "k_new" in t
    B, Tq, H, D = q.shape
    Hkv = k_cache.shape[2]
    scale, left, right, softcap = attention_params(opts, D, T)
    out, lse = np.zeros_like(q), np.zeros((B, H, Tq), dtype=T)
    for b in range(B):
        n = int(lens[b])
        if append:
            k_cache[b, n:n + Tq] = t["k_new"].astype(T)[b]
            v_cache[b, n:n + Tq] = t["v_new"].astype(T)[b]
            n += Tq
        for h in range(H):
            g = h // (H // Hkv)
            out[b, :, h], lse[b, h], _, _ = attend(q[b, :, h], k_cache[b, :n, g], v_cache[b, :n, g],
                                                   scale, left, right, softcap, T)
    result = {"out": out, "lse": lse}
    if append:
        result.update({"k_cache": k_cache, "v_cache": v_cache})
    return result


# ---- recurrent ops (include/longctx/ops/{selective_scan,ssd,linear_scan,causal_conv1d}.h) -------

def softplus(x, T):
    return np.log1p(np.exp(x))


def sigmoid(x, T):
    return T(1) / (T(1) + np.exp(-x))


def silu_grad(z, T):
    s = sigmoid(z, T)
    return s * (T(1) + z * (T(1) - s))


def ssm_scan(u, dl, A, Bx, Cx, h0, T):
    """The state-space recurrence both Mamba ops reduce to, for one batch row, one step at a time:
    h_l[c, n] = exp(dl_l[c] * A[c, n]) * h_{l-1}[c, n] + dl_l[c] * Bx_l[c, n] * u_l[c],
    y_l[c] = sum_n Cx_l[c, n] * h_l[c, n].  u, dl: (C, L); A, h0: (C, N); Bx, Cx: (C, N, L).
    Returns y and every h_l (L, C, N)."""
    L = u.shape[1]
    h, y, hs = h0.copy(), np.zeros_like(u), np.zeros((L,) + h0.shape, dtype=T)
    for l in range(L):
        h = np.exp(dl[:, l, None] * A) * h + (dl[:, l] * u[:, l])[:, None] * Bx[:, :, l]
        y[:, l] = np.sum(Cx[:, :, l] * h, axis=1)
        hs[l] = h
    return y, hs


def ssm_scan_grads(dy, dlast, u, dl, A, Bx, Cx, h0, hs, T):
    """Reverse-mode of ssm_scan by hand, backwards in time: du, ddl, dA, dBx, dCx, dh0."""
    L = u.shape[1]
    du, ddl = np.zeros_like(u), np.zeros_like(dl)
    dA, dBx, dCx = np.zeros_like(A), np.zeros_like(Bx), np.zeros_like(Cx)
    gh = dlast.copy()  # d loss / d h_l, accumulated
    for l in reversed(range(L)):
        gh = gh + dy[:, l, None] * Cx[:, :, l]
        dCx[:, :, l] = dy[:, l, None] * hs[l]
        prev = hs[l - 1] if l > 0 else h0
        decay = np.exp(dl[:, l, None] * A)
        gdecay = gh * prev * decay
        gb = np.sum(gh * Bx[:, :, l], axis=1)
        ddl[:, l] = np.sum(gdecay * A, axis=1) + gb * u[:, l]
        du[:, l] = gb * dl[:, l]
        dA += gdecay * dl[:, l, None]
        dBx[:, :, l] = gh * (dl[:, l] * u[:, l])[:, None]
        gh = gh * decay
    return du, ddl, dA, dBx, dCx, gh


def selective_scan(t, opts, T, backward):
    u, delta, A = t["u"].astype(T), t["delta"].astype(T), t["A"].astype(T)
    Bm, Cm = t["B"].astype(T), t["C"].astype(T)
    batch, Dm, L = u.shape
    N, G = A.shape[1], Bm.shape[1]
    get = lambda name: t[name].astype(T) if name in t else None
    D, z, bias, h0 = get("D"), get("z"), get("delta_bias"), get("h0")
    soft = option(opts, "delta_softplus", False)
    raw = delta + (bias[None, :, None] if bias is not None else T(0))
    dl = softplus(raw, T) if soft else raw
    rep = Dm // G
    out, last = np.zeros_like(u), np.zeros((batch, Dm, N), dtype=T)
    grads = {n: np.zeros_like(t[n[1:]].astype(T)) for n in
             ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dh0"] if n[1:] in t}
    for b in range(batch):
        Bx, Cx = np.repeat(Bm[b], rep, axis=0), np.repeat(Cm[b], rep, axis=0)
        hb = h0[b] if h0 is not None else np.zeros((Dm, N), dtype=T)
        y, hs = ssm_scan(u[b], dl[b], A, Bx, Cx, hb, T)
        if D is not None:
            y = y + D[:, None] * u[b]
        out[b] = y * z[b] * sigmoid(z[b], T) if z is not None else y
        last[b] = hs[-1] if L else hb  # no steps: the state is the initial one
        if not backward:
            continue
        dout = t["dout"].astype(T)[b]
        dy = dout * z[b] * sigmoid(z[b], T) if z is not None else dout
        dlast = t["dlast_state"].astype(T)[b] if "dlast_state" in t else np.zeros_like(hb)
        du, ddl, dA, dBx, dCx, dh0 = ssm_scan_grads(dy, dlast, u[b], dl[b], A, Bx, Cx, hb, hs, T)
        if D is not None:
            du = du + D[:, None] * dy
            grads["dD"] += np.sum(dy * u[b], axis=1)
        if z is not None:
            grads["dz"][b] = dout * y * silu_grad(z[b], T)
        ddelta = ddl * sigmoid(raw[b], T) if soft else ddl
        grads["du"][b], grads["ddelta"][b] = du, ddelta
        grads["dA"] += dA
        grads["dB"][b] = dBx.reshape(G, rep, N, L).sum(axis=1)
        grads["dC"][b] = dCx.reshape(G, rep, N, L).sum(axis=1)
        if bias is not None:
            grads["ddelta_bias"] += np.sum(ddelta, axis=1)
        if h0 is not None:
            grads["dh0"][b] = dh0
    return grads if backward else {"out": out, "last_state": last}


def ssd(t, opts, T, backward):
    """Reduced to ssm_scan with one channel c = (h, p) per head dimension: dl and A per head,
    broadcast over p and n. chunk_size only changes how the op computes, not what."""
    x, dt, A = t["x"].astype(T), t["dt"].astype(T), t["A"].astype(T)
    Bm, Cm = t["B"].astype(T), t["C"].astype(T)
    batch, L, H, P = x.shape
    G, N = Bm.shape[2], Bm.shape[3]
    get = lambda name: t[name].astype(T) if name in t else None
    D, z, bias, h0 = get("D"), get("z"), get("dt_bias"), get("initial_states")
    soft = option(opts, "dt_softplus", False)
    raw = dt + (bias if bias is not None else T(0))  # (B, L, H)
    dlh = softplus(raw, T) if soft else raw
    rep = (H // G) * P  # channels per group
    Ac = np.repeat(np.repeat(A, P)[:, None], N, axis=1)  # (H*P, N)
    out, final = np.zeros_like(x), np.zeros((batch, H, P, N), dtype=T)
    grads = {n: np.zeros_like(t[n[1:]].astype(T)) for n in
             ["dx", "ddt", "dA", "dB", "dC", "dD", "dz", "ddt_bias", "dinitial_states"] if n[1:] in t}
    channels = lambda a: a.transpose(1, 2, 0).reshape(H * P, L)  # (L, H, P) -> (H*P, L)
    unchannel = lambda a: a.reshape(H, P, L).transpose(2, 0, 1)
    for b in range(batch):
        u, dl = channels(x[b]), np.repeat(dlh[b].T, P, axis=0)
        Bx = np.repeat(Bm[b].transpose(1, 2, 0), rep, axis=0)  # (H*P, N, L)
        Cx = np.repeat(Cm[b].transpose(1, 2, 0), rep, axis=0)
        hb = h0[b].reshape(H * P, N) if h0 is not None else np.zeros((H * P, N), dtype=T)
        y, hs = ssm_scan(u, dl, Ac, Bx, Cx, hb, T)
        y = unchannel(y)
        if D is not None:
            y = y + D[None, :, None] * x[b]
        out[b] = y * z[b] * sigmoid(z[b], T) if z is not None else y
        final[b] = (hs[-1] if L else hb).reshape(H, P, N)  # no steps: the initial state
        if not backward:
            continue
        dout = t["dout"].astype(T)[b]
        dy = dout * z[b] * sigmoid(z[b], T) if z is not None else dout
        dlast = (t["dfinal_states"].astype(T)[b].reshape(H * P, N) if "dfinal_states" in t
                 else np.zeros_like(hb))
        du, ddl, dA, dBx, dCx, dh0 = ssm_scan_grads(channels(dy), dlast, u, dl, Ac, Bx, Cx, hb,
                                                    hs, T)
        dx = unchannel(du)
        if D is not None:
            dx = dx + D[None, :, None] * dy
            grads["dD"] += np.sum(dy * x[b], axis=(0, 2))
        if z is not None:
            grads["dz"][b] = dout * y * silu_grad(z[b], T)
        ddt = ddl.reshape(H, P, L).sum(axis=1).T  # (L, H)
        if soft:
            ddt = ddt * sigmoid(raw[b], T)
        grads["dx"][b], grads["ddt"][b] = dx, ddt
        grads["dA"] += dA.reshape(H, P * N).sum(axis=1)
        grads["dB"][b] = dBx.reshape(G, rep, N, L).sum(axis=1).transpose(2, 0, 1)
        grads["dC"][b] = dCx.reshape(G, rep, N, L).sum(axis=1).transpose(2, 0, 1)
        if bias is not None:
            grads["ddt_bias"] += np.sum(ddt, axis=0)
        if h0 is not None:
            grads["dinitial_states"][b] = dh0.reshape(H, P, N)
    return grads if backward else {"out": out, "final_states": final}


def linear_scan(t, opts, T, backward):
    a, b = t["a"].astype(T), t["b"].astype(T)
    batch, L, D = a.shape
    h0 = t["h0"].astype(T) if "h0" in t else np.zeros((batch, D), dtype=T)
    out, h = np.zeros_like(a), h0
    for l in range(L):
        h = a[:, l] * h + b[:, l]
        out[:, l] = h
    if not backward:
        return {"out": out, "last_state": h}
    dout = t["dout"].astype(T)
    g = t["dlast_state"].astype(T).copy() if "dlast_state" in t else np.zeros((batch, D), dtype=T)
    da, db = np.zeros_like(a), np.zeros_like(b)
    for l in reversed(range(L)):
        g = g + dout[:, l]
        db[:, l] = g
        da[:, l] = g * (out[:, l - 1] if l > 0 else h0)
        g = g * a[:, l]
    grads = {"da": da, "db": db}
    if "h0" in t:
        grads["dh0"] = g
    return grads


def causal_conv1d(t, opts, T, backward):
    x, w = t["x"].astype(T), t["weight"].astype(T)
    batch, D, L = x.shape
    W = w.shape[1]
    silu = opts.get("activation", "none") == "silu"
    xpad = np.concatenate([np.zeros((batch, D, W - 1), dtype=T), x], axis=2)
    pre = t["bias"].astype(T)[None, :, None] if "bias" in t else np.zeros((1, D, 1), dtype=T)
    for k in range(W):
        pre = pre + w[None, :, k, None] * xpad[:, :, k:k + L]
    if not backward:
        return {"out": pre * sigmoid(pre, T) if silu else pre}
    dpre = t["dout"].astype(T)
    if silu:
        dpre = dpre * silu_grad(pre, T)
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    for k in range(W):
        dw[:, k] = np.sum(dpre * xpad[:, :, k:k + L], axis=(0, 2))
        dxpad[:, :, k:k + L] += dpre * w[None, :, k, None]
    grads = {"dx": dxpad[:, :, W - 1:], "dweight": dw}
    if "bias" in t:
        grads["dbias"] = np.sum(dpre, axis=(0, 2))
    return grads


# ---- monarch_linear (include/longctx/ops/monarch_linear.h) -----------------------------------------

def monarch_linear(t, opts, T, backward):
    x, w1, w2 = t["x"].astype(T), t["w1"].astype(T), t["w2"].astype(T)
    k, q, p = w1.shape
    l, s, r = w2.shape
    lead = x.shape[:-1]
    xb = x.reshape(-1, k, p)                                   # (M, k, p)
    y1 = np.einsum("mic,ijc->mij", xb, w1)                     # (M, k, q)
    y1t = y1.reshape(-1, r, l).transpose(0, 2, 1)              # (M, l, r)
    if not backward:
        y2 = np.einsum("mac,abc->mab", y1t, w2)                # (M, l, s)
        out = y2.transpose(0, 2, 1).reshape(*lead, s * l)      # index b·l + a
        if "bias" in t:
            out = out + t["bias"].astype(T)
        return {"out": out, "mid": y1t.reshape(*lead, l * r)}
    dy2 = t["dout"].astype(T).reshape(-1, s, l).transpose(0, 2, 1)   # (M, l, s)
    dy1 = np.einsum("mab,abc->mac", dy2, w2).transpose(0, 2, 1).reshape(-1, k, q)
    grads = {"dx": np.einsum("mij,ijc->mic", dy1, w1).reshape(x.shape),
             "dw1": np.einsum("mij,mic->ijc", dy1, xb),
             "dw2": np.einsum("mab,mac->abc", dy2, y1t)}
    if "bias" in t:
        grads["dbias"] = np.sum(t["dout"].astype(T).reshape(-1, s * l), axis=0)
    return grads


# ---- gated_delta_rule (include/longctx/ops/gated_delta_rule.h) --------------------------------------

def gated_delta_rule(t, opts, T, backward):
    """The token-by-token recurrence per (batch row, value head): S <- diag(exp g) S, then
    S <- S + k (beta (v - S^T k))^T, o = S^T (scale q); the backward by hand, in reverse over the
    stored states. Rectangular batches (no cu_seqlens)."""
    q, k, v = t["q"].astype(T), t["k"].astype(T), t["v"].astype(T)
    g, beta = t["g"].astype(T), t["beta"].astype(T)
    B, L, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    R = HV // H
    kda = g.ndim == 4
    scale = T(float(opts.get("scale", "0")))
    if scale == 0:
        scale = T(1) / np.sqrt(T(K))
    l2 = json.loads(opts.get("use_qk_l2norm", "false"))

    def normalized(x):
        if not l2:
            return x, None
        r = T(1) / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + T(1e-6))
        return x * r, r

    qh, rq = normalized(q)
    kh, rk = normalized(k)
    h0 = t["initial_state"].astype(T) if "initial_state" in t else np.zeros((B, HV, K, V), dtype=T)
    out, final = np.zeros((B, L, HV, V), dtype=T), np.zeros((B, HV, K, V), dtype=T)
    states = np.zeros((B, HV, L + 1, K, V), dtype=T)

    def decay(b, l, hv):  # exp(g) as a column (K, 1) for KDA, else a scalar
        a = np.exp(g[b, l, hv])
        return a[:, None] if kda else a

    for b in range(B):
        for hv in range(HV):
            h = hv // R
            S = h0[b, hv].copy()
            states[b, hv, 0] = S
            for l in range(L):
                S = decay(b, l, hv) * S
                u = beta[b, l, hv] * (v[b, l, hv] - kh[b, l, h] @ S)
                S = S + np.outer(kh[b, l, h], u)
                out[b, l, hv] = (scale * qh[b, l, h]) @ S
                states[b, hv, l + 1] = S
            final[b, hv] = S
    if not backward:
        return {"out": out, "final_state": final}
    dout = t["dout"].astype(T)
    dfinal = t["dfinal_state"].astype(T) if "dfinal_state" in t else np.zeros((B, HV, K, V), dtype=T)
    dqh, dkh = np.zeros_like(q), np.zeros_like(k)
    dv, dg, dbeta = np.zeros_like(v), np.zeros_like(g), np.zeros_like(beta)
    dh0 = np.zeros((B, HV, K, V), dtype=T)
    for b in range(B):
        for hv in range(HV):
            h = hv // R
            dS = dfinal[b, hv].copy()
            for l in reversed(range(L)):
                Sprev, Scur = states[b, hv, l], states[b, hv, l + 1]
                a = decay(b, l, hv)
                Sp = a * Sprev
                kk, qq, bt = kh[b, l, h], qh[b, l, h], beta[b, l, hv]
                vm = v[b, l, hv] - kk @ Sp
                dS = dS + np.outer(scale * qq, dout[b, l, hv])
                dqh[b, l, h] += scale * (Scur @ dout[b, l, hv])
                du = kk @ dS
                dbeta[b, l, hv] = du @ vm
                dv[b, l, hv] = bt * du
                w = -bt * du
                dkh[b, l, h] += dS @ (bt * vm) + Sp @ w
                dSp = dS + np.outer(kk, w)
                da = np.sum(Sprev * dSp, axis=1)
                dg[b, l, hv] = a[:, 0] * da if kda else a * np.sum(da)
                dS = a * dSp
            dh0[b, hv] = dS

    def through_l2norm(xh, r, dxh):
        if not l2:
            return dxh
        return r * (dxh - xh * np.sum(xh * dxh, axis=-1, keepdims=True))

    grads = {"dq": through_l2norm(qh, rq, dqh), "dk": through_l2norm(kh, rk, dkh), "dv": dv,
             "dg": dg, "dbeta": dbeta}
    if "initial_state" in t:
        grads["dinitial_state"] = dh0
    return grads


OPS = {"rmsnorm": rmsnorm, "linear": linear, "rope": rope, "swiglu": swiglu,
       "embedding": embedding, "cross_entropy": cross_entropy, "adamw": adamw,
       "attention": attention, "attention_decode": attention_decode,
       "selective_scan": selective_scan, "ssd": ssd, "linear_scan": linear_scan,
       "causal_conv1d": causal_conv1d, "monarch_linear": monarch_linear,
       "gated_delta_rule": gated_delta_rule}


def main():
    args = [a for a in sys.argv[1:] if a != "--backward"]
    backward = "--backward" in sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    op, src, dst = args
    tensors, metadata = read_safetensors(src)
    naive_type = np.float64 if any(dt == "F64" for _, dt in tensors.values()) else np.float32
    arrays = {name: a for name, (a, _) in tensors.items()}
    exact = OPS[op](arrays, metadata, np.longdouble, backward)
    naive = OPS[op](arrays, metadata, naive_type, backward)
    out = {}
    for name in exact:
        out[name] = np.asarray(exact[name], dtype=np.float64)
        out[name + ".naive"] = np.asarray(naive[name], dtype=np.float64)
    write_safetensors(dst, out)


if __name__ == "__main__":
    main()
