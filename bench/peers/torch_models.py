"""The longctx model presets written in plain PyTorch, layer for layer, for the peer benchmark.

Each module mirrors the longctx C++ code named in its docstring: the same parameters (names,
shapes, count), the same initialisation recipe and the same arithmetic, so a training step or a
prefill does the same work on both sides. Built from a preset's JSON with the defaults of
include/longctx/model/config.h filled in (see `load_config`).

    model = Model(load_config("models/presets/llama.json"))
    loss = model(tokens, targets)       # tokens, targets: (B, T) int64
    logits = model(tokens)              # (B, T, V)
"""
import functools
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

# Layer letters of a pattern string (config.h); only the kinds this benchmark mirrors.
LETTERS = {"*": "attention", "-": "mlp", "S": "mamba2", "G": "gated_deltanet", "K": "kda"}


def load_config(path):
    """A preset's JSON with config.h's defaults (and its derived widths) filled in."""
    with open(path) as f:
        raw = json.load(f)
    c = {
        "vocab_size": raw.get("vocab_size", 256),
        "d_model": raw.get("d_model", 128),
        "tie_embeddings": raw.get("tie_embeddings", True),
        "norm_eps": raw.get("norm_eps", 1e-5),
    }
    attn = {"n_heads": 4, "n_kv_heads": 4, "rope_theta": 10000.0, "gated": False}
    attn.update(raw.get("attention", {}))
    m2 = {"d_state": 64, "head_dim": 32, "expand": 2, "n_groups": 1, "d_conv": 4, "chunk_size": 64}
    m2.update(raw.get("mamba2", {}))
    dn = {"n_heads": 4, "n_v_heads": 0, "head_k_dim": 32, "head_v_dim": 32, "d_conv": 4,
          "chunk_size": 64}
    dn.update(raw.get("deltanet", {}))
    # config.cpp: n_v_heads 0 means n_heads.
    dn["n_v_heads"] = dn["n_v_heads"] or dn["n_heads"]
    # config.cpp: hidden = 8/3 * d_model rounded up to a multiple of 64.
    mlp = {"hidden": (8 * c["d_model"] // 3 + 63) // 64 * 64}
    mlp.update(raw.get("mlp", {}))
    unknown = [ch for ch in raw["pattern"] if ch not in LETTERS]
    if unknown or "layers" in raw:
        raise ValueError(f"{path}: only the layer letters {sorted(LETTERS)} are mirrored")
    c.update(name=raw.get("name", "model"), attention=attn, mamba2=m2, deltanet=dn, mlp=mlp,
             layers=[LETTERS[ch] for ch in raw["pattern"]])
    return c


def rms_norm(x, weight, eps):
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class Attention(nn.Module):
    """src/model/attention_mixer.cpp: q/k/v projections, RoPE (rotate_half), causal SDPA with
    GQA, output projection; no biases. With `gated` (Qwen3-Next) the output is multiplied by
    sigmoid(x Wgate^T), one gate per channel, before the output projection."""

    def __init__(self, c):
        super().__init__()
        C, a = c["d_model"], c["attention"]
        self.H, self.Hkv = a["n_heads"], a["n_kv_heads"]
        self.D = C // self.H
        self.theta = a["rope_theta"]
        self.wq = nn.Parameter(torch.empty(self.H * self.D, C))
        self.wk = nn.Parameter(torch.empty(self.Hkv * self.D, C))
        self.wv = nn.Parameter(torch.empty(self.Hkv * self.D, C))
        self.wo = nn.Parameter(torch.empty(C, self.H * self.D))
        self.wgate = nn.Parameter(torch.empty(self.H * self.D, C)) if a["gated"] else None
        self.rope_cache = {}

    def init(self, n_layers, gen):
        for w in (self.wq, self.wk, self.wv):
            w.normal_(0, 0.02, generator=gen)
        self.wo.normal_(0, 0.02 / math.sqrt(2 * n_layers), generator=gen)
        if self.wgate is not None:  # q_proj's rows in Qwen3-Next, initialised like them
            self.wgate.normal_(0, 0.02, generator=gen)

    def rope_tables(self, T, device):
        # Angles in float64 as longctx's rope does, rounded to f32 once; cached per length
        # outside autograd (a constant).
        if T not in self.rope_cache:
            i = torch.arange(self.D // 2, dtype=torch.float64)
            freq = self.theta ** (-2.0 * i / self.D)
            angle = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
            self.rope_cache[T] = (angle.cos().float().to(device), angle.sin().float().to(device))
        return self.rope_cache[T]

    @staticmethod
    def rope(x, cos, sin):  # x: (B, heads, T, D)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def forward(self, x):
        B, T, _ = x.shape
        q = F.linear(x, self.wq).view(B, T, self.H, self.D).transpose(1, 2)
        k = F.linear(x, self.wk).view(B, T, self.Hkv, self.D).transpose(1, 2)
        v = F.linear(x, self.wv).view(B, T, self.Hkv, self.D).transpose(1, 2)
        cos, sin = self.rope_tables(T, x.device)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.Hkv != self.H)
        o = o.transpose(1, 2).reshape(B, T, self.H * self.D)
        if self.wgate is not None:
            o = o * torch.sigmoid(F.linear(x, self.wgate))
        return F.linear(o, self.wo)


class MLP(nn.Module):
    """src/model/mlp_mixer.cpp: SwiGLU, y = (silu(x Wg^T) * (x Wu^T)) Wd^T."""

    def __init__(self, c):
        super().__init__()
        C, Fh = c["d_model"], c["mlp"]["hidden"]
        self.wg = nn.Parameter(torch.empty(Fh, C))
        self.wu = nn.Parameter(torch.empty(Fh, C))
        self.wd = nn.Parameter(torch.empty(C, Fh))

    def init(self, n_layers, gen):
        self.wg.normal_(0, 0.02, generator=gen)
        self.wu.normal_(0, 0.02, generator=gen)
        self.wd.normal_(0, 0.02 / math.sqrt(2 * n_layers), generator=gen)

    def forward(self, x):
        return F.linear(F.silu(F.linear(x, self.wg)) * F.linear(x, self.wu), self.wd)


def ssd_chunked(x, dt, A, Bm, Cm, chunk):
    """Mamba-2's SSD in chunks (the algorithm of include/longctx/ops/ssd.h, without D and z):
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T,  y_t = h_t C_t.
    x: (B, T, H, P); dt: (B, T, H) (after softplus); A: (H); Bm, Cm: (B, T, G, N).
    Inside a chunk the outputs are one masked (L x L) product per head; the states entering the
    chunks come from the chunks' end states, combined across chunks by a (c x c) decay matrix."""
    Bsz, T, H, P = x.shape
    G, N = Bm.shape[2], Bm.shape[3]
    assert T % chunk == 0, "T must be a multiple of chunk_size"
    c, L = T // chunk, chunk
    x = x.reshape(Bsz, c, L, H, P)
    dt = dt.reshape(Bsz, c, L, H)
    # Heads share their group's B and C.
    Bg, Cg = Bm.reshape(Bsz, c, L, G, N), Cm.reshape(Bsz, c, L, G, N)
    # The (L x L) products C_i . B_j once per group, then shared by the group's heads.
    scores = torch.einsum("bclgn,bcsgn->bgcls", Cg, Bg).repeat_interleave(H // G, dim=1)
    Bm = Bg[:, :, :, :, None].expand(-1, -1, -1, -1, H // G, -1).reshape(Bsz, c, L, H, N)
    Cm = Cg[:, :, :, :, None].expand(-1, -1, -1, -1, H // G, -1).reshape(Bsz, c, L, H, N)
    log_a = (dt * A).permute(0, 3, 1, 2)  # (B, H, c, L): log of each step's decay
    cum = log_a.cumsum(-1)
    # Decay from step j to step i within a chunk, exp(cum_i - cum_j) for i >= j, else 0.
    mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    seg = (cum[..., :, None] - cum[..., None, :]).masked_fill(~mask, float("-inf")).exp()
    xdt = x * dt[..., None]  # (B, c, L, H, P)
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores * seg, xdt)
    # Each chunk's end state from its own inputs, then the states entering each chunk.
    to_end = (cum[..., -1:] - cum).exp()  # (B, H, c, L)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bm, to_end, xdt)
    chunk_log = cum[..., -1]  # (B, H, c)
    ccum = F.pad(chunk_log, (1, 0)).cumsum(-1)  # (B, H, c + 1)
    cmask = torch.ones(c + 1, c + 1, dtype=torch.bool, device=x.device).tril()
    cdecay = (ccum[..., :, None] - ccum[..., None, :]).masked_fill(~cmask, float("-inf")).exp()
    # Entering chunk i: sum over j <= i of exp(ccum_i - ccum_j) * states0_j, where states0_j is
    # the end state of chunk j - 1 from its own inputs (states0_0 = 0).
    states0 = torch.cat((torch.zeros_like(states[:, :1]), states), dim=1)  # (B, c + 1, H, P, N)
    entering = torch.einsum("bhij,bjhpn->bihpn", cdecay, states0)[:, :-1]  # (B, c, H, P, N)
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cm, entering, cum.exp())
    return (y_diag + y_off).reshape(Bsz, T, H, P)


class Mamba2(nn.Module):
    """src/model/mamba2_mixer.cpp: in_proj -> [z, xBC, dt]; xBC = silu(depthwise causal conv +
    bias); SSD with dt = softplus(dt + dt_bias), A = -exp(A_log), skip D; gate y * silu(z);
    RMSNorm over the inner width; out_proj."""

    def __init__(self, c):
        super().__init__()
        C, m = c["d_model"], c["mamba2"]
        self.Di = m["expand"] * C
        self.P, self.G, self.N, self.W = m["head_dim"], m["n_groups"], m["d_state"], m["d_conv"]
        self.H = self.Di // self.P
        self.K = self.Di + 2 * self.G * self.N  # conv channels
        self.chunk, self.eps = m["chunk_size"], c["norm_eps"]
        self.in_proj = nn.Parameter(torch.empty(self.Di + self.K + self.H, C))
        self.conv_weight = nn.Parameter(torch.empty(self.K, self.W))
        self.conv_bias = nn.Parameter(torch.empty(self.K))
        self.dt_bias = nn.Parameter(torch.empty(self.H))
        self.A_log = nn.Parameter(torch.empty(self.H))
        self.D = nn.Parameter(torch.empty(self.H))
        self.norm = nn.Parameter(torch.empty(self.Di))
        self.out_proj = nn.Parameter(torch.empty(C, self.Di))

    def init(self, n_layers, gen):
        self.in_proj.normal_(0, 0.02, generator=gen)
        bound = 1 / math.sqrt(self.W)
        self.conv_weight.uniform_(-bound, bound, generator=gen)
        self.conv_bias.uniform_(-bound, bound, generator=gen)
        u = torch.rand(self.H, generator=gen, dtype=torch.float64)
        dt = torch.exp(math.log(1e-3) + u * (math.log(1e-1) - math.log(1e-3)))
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log.copy_(torch.log(1 + 15 * torch.rand(self.H, generator=gen, dtype=torch.float64)))
        self.D.fill_(1.0)
        self.norm.fill_(1.0)
        self.out_proj.normal_(0, 0.02 / math.sqrt(2 * n_layers), generator=gen)

    def forward(self, x):
        B, T, _ = x.shape
        z, xbc, dt = F.linear(x, self.in_proj).split([self.Di, self.K, self.H], dim=-1)
        xbc = F.conv1d(xbc.transpose(1, 2), self.conv_weight[:, None, :], self.conv_bias,
                       padding=self.W - 1, groups=self.K)[..., :T]
        xbc = F.silu(xbc).transpose(1, 2)
        xs, Bm, Cm = xbc.split([self.Di, self.G * self.N, self.G * self.N], dim=-1)
        xs = xs.reshape(B, T, self.H, self.P)
        dt = F.softplus(dt + self.dt_bias)
        y = ssd_chunked(xs, dt, -torch.exp(self.A_log), Bm.reshape(B, T, self.G, self.N),
                        Cm.reshape(B, T, self.G, self.N), self.chunk)
        y = (y + self.D[:, None] * xs).reshape(B, T, self.Di)
        return F.linear(rms_norm(y * F.silu(z), self.norm, self.eps), self.out_proj)


def l2norm(x):
    """x / sqrt(sum x^2 + 1e-6) over the last dim: the gated_delta_rule's use_qk_l2norm (not
    F.normalize, which divides by max(|x|, eps))."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)


def gated_delta_rule_chunked(q, k, v, g, beta, scale, chunk):
    """The gated delta rule (include/longctx/ops/gated_delta_rule.h, without l2norm and states
    in or out), per value head a K x V state S from zero, token by token:
    S <- diag(exp g_t) S;  S <- S + k_t (beta_t (v_t - S^T k_t))^T;  o_t = S^T (scale q_t).
    q, k: (B, T, H, K); v: (B, T, HV, V); g: (B, T, HV) (Gated DeltaNet) or (B, T, HV, K) (KDA);
    beta: (B, T, HV); value head hv reads q/k head hv // (HV / H). Returns (B, T, HV, V).

    In chunks of L tokens (the UT transform). With G_t = exp of g summed from the chunk's start
    to t (per key channel for KDA) and S0 the state entering the chunk, the delta values
    u_t = beta_t (v_t - (exp(g_t) S_{t-1})^T k_t) satisfy the unit lower-triangular system
    u_t + sum_{j<t} beta_t (k_t^T diag(G_t / G_j) k_j) u_j = beta_t (v_t - S0^T (G_t k_t)),
    solved once per chunk for both right-hand sides, U = U0 - W S0. Then
    o_t = scale (G_t q_t)^T S0 + sum_{j<=t} scale (q_t^T diag(G_t / G_j) k_j) u_j and the state
    leaving is G_L S0 + sum_j (G_L / G_j) k_j u_j^T. Everything that does not involve S0 is
    computed for all chunks at once; a loop over the chunks carries the state. Every decay is
    exp of a sum of g over a segment ending after it starts (as the C++ op), so for g <= 0 no
    exp argument is positive."""
    Bsz, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    per_channel = g.dim() == 4
    if HV != H:  # grouped value heads: each q/k head serves HV / H of them
        q, k = q.repeat_interleave(HV // H, dim=2), k.repeat_interleave(HV // H, dim=2)
    # Zero tokens at the end fill the last chunk: with k = v = beta = g = 0 they change neither
    # the state nor the earlier outputs.
    pad = -T % chunk
    if pad:
        q, k, v, g = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (q, k, v, g))
        beta = F.pad(beta, (0, 0, 0, pad))
    n, L = (T + pad) // chunk, chunk

    def chunks(t):  # (B, T, HV, ...) -> (B, HV, n, L, ...)
        return t.reshape(Bsz, n, L, HV, *t.shape[3:]).transpose(1, 3).transpose(2, 3)

    q, k, v, beta = chunks(q), chunks(k), chunks(v), chunks(beta)
    gam = chunks(g if per_channel else g[..., None]).cumsum(3)  # (B, HV, n, L, K or 1)
    # Decays from token j to token i of a chunk, exp(gam_i - gam_j) for j <= i, else 0.
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    diff = gam[..., :, None, :] - gam[..., None, :, :]  # (B, HV, n, L, L, K or 1)
    if per_channel:
        # KDA: the decay differs per key channel, so it sits inside the products over K, one
        # (L, L, K) factor per chunk and head (exp(gam_i) / exp(gam_j) in two factors would be
        # cheaper, but exp(-gam_j) overflows once a chunk's decays pass exp(-88) in f32).
        decay = diff.masked_fill(~mask[..., None], float("-inf")).exp()
        kk = torch.einsum("bhnic,bhnjc,bhnijc->bhnij", k, k, decay)
        qk = torch.einsum("bhnic,bhnjc,bhnijc->bhnij", q, k, decay)
    else:
        decay = diff[..., 0].masked_fill(~mask, float("-inf")).exp()
        kk = (k @ k.transpose(-1, -2)) * decay
        qk = (q @ k.transpose(-1, -2)) * decay
    # Unit lower-triangular I + A, A strictly lower: A_ij = beta_i k_i^T diag(G_i / G_j) k_j.
    eye = torch.eye(L, dtype=q.dtype, device=q.device)
    system = eye + (beta[..., None] * kk).masked_fill(~mask.tril(-1), 0.0)
    G = gam.exp()  # (B, HV, n, L, K or 1)
    W = torch.linalg.solve_triangular(system, beta[..., None] * G * k, upper=False,
                                      unitriangular=True)  # (B, HV, n, L, K)
    U0 = torch.linalg.solve_triangular(system, beta[..., None] * v, upper=False,
                                       unitriangular=True)  # (B, HV, n, L, V)
    qk = scale * qk
    qG = scale * q * G
    to_end = (gam[..., -1:, :] - gam).exp() * k  # (G_L / G_j) k_j, (B, HV, n, L, K)
    chunk_decay = gam[..., -1, :].exp()[..., None]  # G_L as (B, HV, n, K or 1, 1)
    S = q.new_zeros(Bsz, HV, K, V)
    out = []
    for i in range(n):
        U = U0[:, :, i] - W[:, :, i] @ S
        out.append(qG[:, :, i] @ S + qk[:, :, i] @ U)
        S = chunk_decay[:, :, i] * S + to_end[:, :, i].transpose(-1, -2) @ U
    o = torch.stack(out, dim=2)  # (B, HV, n, L, V)
    return o.permute(0, 2, 3, 1, 4).reshape(Bsz, n * L, HV, V)[:, :T]


class DeltaNet(nn.Module):
    """src/model/deltanet_mixer.cpp, Gated DeltaNet ('G') or with `kda` Kimi Delta Attention
    ('K'): in_proj -> [q, k, v | b | z | a] (G) or [q, k, v | b | f_down | z_down] (K);
    q, k, v = silu(depthwise causal conv, no bias); beta = sigmoid(b);
    g = -exp(A_log) * softplus(a + dt_bias), a per value head (G) or per key channel through
    a = f_down f_up^T (K); o = gated_delta_rule(l2norm(q), l2norm(k), v, g, beta, 1/sqrt(K));
    rmsnorm per value head, times silu(z) (G) or sigmoid(z_down z_up^T + z_up_bias) (K);
    out_proj."""

    def __init__(self, c, kda=False):
        super().__init__()
        C, d = c["d_model"], c["deltanet"]
        self.kda = kda
        self.H, self.HV = d["n_heads"], d["n_v_heads"]
        self.K, self.V = d["head_k_dim"], d["head_v_dim"]
        self.W, self.eps = d["d_conv"], c["norm_eps"]
        # The op runs chunks of min(chunk_size, 2 K) tokens (gated_delta_rule.h).
        self.chunk = min(d["chunk_size"], 2 * self.K)
        kw, vw = self.H * self.K, self.HV * self.V
        self.conv_channels = 2 * kw + vw
        self.gate_width = self.HV * self.K if kda else self.HV
        # in_proj's rows after q, k, v and b: z and a (G), or the rank-V f_down and z_down (K).
        self.split = [self.conv_channels, self.HV] + ([self.V, self.V] if kda else [vw, self.HV])
        self.in_proj = nn.Parameter(torch.empty(sum(self.split), C))
        self.conv_weight = nn.Parameter(torch.empty(self.conv_channels, self.W))
        if kda:
            self.f_up = nn.Parameter(torch.empty(self.gate_width, self.V))
            self.z_up = nn.Parameter(torch.empty(vw, self.V))
            self.z_up_bias = nn.Parameter(torch.empty(vw))
        self.A_log = nn.Parameter(torch.empty(self.HV))
        self.dt_bias = nn.Parameter(torch.empty(self.gate_width))
        self.norm = nn.Parameter(torch.empty(self.V))
        self.out_proj = nn.Parameter(torch.empty(C, vw))

    def init(self, n_layers, gen):
        # The C++ init's recipe (fla's): A = exp(A_log) uniform in [0, 16] (KDA: [1, 16]); dt
        # log-uniform in [1e-3, 1e-1] floored at 1e-4, stored as its inverse softplus.
        self.in_proj.normal_(0, 0.02, generator=gen)
        bound = 1 / math.sqrt(self.W)
        self.conv_weight.uniform_(-bound, bound, generator=gen)
        if self.kda:
            self.f_up.normal_(0, 0.02, generator=gen)
            self.z_up.normal_(0, 0.02, generator=gen)
            self.z_up_bias.zero_()
        lo = 1.0 if self.kda else 0.0
        u = torch.rand(self.HV, generator=gen, dtype=torch.float64)
        self.A_log.copy_(torch.log(lo + (16 - lo) * u))
        u = torch.rand(self.gate_width, generator=gen, dtype=torch.float64)
        dt = torch.exp(math.log(1e-3) + u * (math.log(1e-1) - math.log(1e-3))).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.norm.fill_(1.0)
        self.out_proj.normal_(0, 0.02 / math.sqrt(2 * n_layers), generator=gen)

    def forward(self, x):
        B, T, _ = x.shape
        qkv, b, third, fourth = F.linear(x, self.in_proj).split(self.split, dim=-1)
        qkv = F.conv1d(qkv.transpose(1, 2), self.conv_weight[:, None, :], padding=self.W - 1,
                       groups=self.conv_channels)[..., :T]
        qkv = F.silu(qkv).transpose(1, 2)
        q, k, v = qkv.split([self.H * self.K, self.H * self.K, self.HV * self.V], dim=-1)
        q = l2norm(q.reshape(B, T, self.H, self.K))
        k = l2norm(k.reshape(B, T, self.H, self.K))
        v = v.reshape(B, T, self.HV, self.V)
        beta = torch.sigmoid(b)
        a = F.linear(third, self.f_up) if self.kda else fourth
        A = torch.exp(self.A_log)
        if self.kda:  # one A per value head, shared by its K channels (gdn_gate.h)
            A = A.repeat_interleave(self.K)
        g = -A * F.softplus(a + self.dt_bias)
        if self.kda:
            g = g.reshape(B, T, self.HV, self.K)
        o = gated_delta_rule_chunked(q, k, v, g, beta, 1 / math.sqrt(self.K), self.chunk)
        o = rms_norm(o, self.norm, self.eps).reshape(B, T, self.HV * self.V)
        if self.kda:
            gate = torch.sigmoid(F.linear(fourth, self.z_up, self.z_up_bias))
        else:
            gate = F.silu(third)
        return F.linear(o * gate, self.out_proj)


class Model(nn.Module):
    """src/model/model.cpp: embedding -> (x + mixer(rmsnorm(x))) per layer -> final RMSNorm ->
    LM head (tied to the embedding by default) -> mean cross-entropy."""

    MIXERS = {"attention": Attention, "mlp": MLP, "mamba2": Mamba2, "gated_deltanet": DeltaNet,
              "kda": functools.partial(DeltaNet, kda=True)}

    def __init__(self, c, seed=1):
        super().__init__()
        V, C = c["vocab_size"], c["d_model"]
        self.eps = c["norm_eps"]
        self.embed = nn.Parameter(torch.empty(V, C))
        self.norms = nn.ParameterList([nn.Parameter(torch.ones(C)) for _ in c["layers"]])
        self.mixers = nn.ModuleList([self.MIXERS[kind](c) for kind in c["layers"]])
        self.final_norm = nn.Parameter(torch.ones(C))
        self.head = None if c["tie_embeddings"] else nn.Parameter(torch.empty(V, C))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.embed.normal_(0, 0.02, generator=gen)
            for m in self.mixers:
                m.init(len(c["layers"]), gen)
            if self.head is not None:
                self.head.normal_(0, 0.02, generator=gen)

    def forward(self, tokens, targets=None):
        h = F.embedding(tokens, self.embed)
        for norm, mixer in zip(self.norms, self.mixers):
            h = h + mixer(rms_norm(h, norm, self.eps))
        logits = F.linear(rms_norm(h, self.final_norm, self.eps),
                          self.embed if self.head is None else self.head)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def ssd_sequential(x, dt, A, Bm, Cm):
    """The same recurrence token by token in float64: the check of ssd_chunked."""
    Bsz, T, H, P = x.shape
    G, N = Bm.shape[2], Bm.shape[3]
    x, dt, A, Bm, Cm = (t.double() for t in (x, dt, A, Bm, Cm))
    h = torch.zeros(Bsz, H, P, N, dtype=torch.float64)
    ys = []
    for t in range(T):
        g = torch.arange(H) // (H // G)
        Bt, Ct = Bm[:, t][:, g], Cm[:, t][:, g]  # (B, H, N)
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + \
            (dt[:, t, :, None] * x[:, t])[..., None] * Bt[:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, Ct))
    return torch.stack(ys, dim=1)


def gated_delta_rule_sequential(q, k, v, g, beta, scale):
    """The same rule token by token in float64, as gated_delta_rule.h states it: the check of
    gated_delta_rule_chunked."""
    Bsz, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    q, k, v, g, beta = (t.double() for t in (q, k, v, g, beta))
    h = torch.arange(HV) // (HV // H)  # the q/k head of each value head
    S = torch.zeros(Bsz, HV, K, V, dtype=torch.float64)
    out = []
    for t in range(T):
        qt, kt = q[:, t][:, h], k[:, t][:, h]  # (B, HV, K)
        decay = g[:, t].exp()  # (B, HV) or (B, HV, K)
        S = S * (decay[..., None] if g.dim() == 4 else decay[..., None, None])
        delta = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, kt))
        S = S + kt[..., None] * delta[:, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, scale * qt))
    return torch.stack(out, dim=1)
