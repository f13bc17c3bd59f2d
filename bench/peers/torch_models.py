"""The longctx model presets written in plain PyTorch, layer for layer, for the peer benchmark.

Each module mirrors the longctx C++ code named in its docstring: the same parameters (names,
shapes, count), the same initialisation recipe and the same arithmetic, so a training step or a
prefill does the same work on both sides. Built from a preset's JSON with the defaults of
include/longctx/model/config.h filled in (see `load_config`).

    model = Model(load_config("models/presets/llama.json"))
    loss = model(tokens, targets)       # tokens, targets: (B, T) int64
    logits = model(tokens)              # (B, T, V)
"""
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

# Layer letters of a pattern string (config.h); only the kinds this benchmark mirrors.
LETTERS = {"*": "attention", "-": "mlp", "S": "mamba2"}


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
    attn = {"n_heads": 4, "n_kv_heads": 4, "rope_theta": 10000.0}
    attn.update(raw.get("attention", {}))
    m2 = {"d_state": 64, "head_dim": 32, "expand": 2, "n_groups": 1, "d_conv": 4, "chunk_size": 64}
    m2.update(raw.get("mamba2", {}))
    # config.cpp: hidden = 8/3 * d_model rounded up to a multiple of 64.
    mlp = {"hidden": (8 * c["d_model"] // 3 + 63) // 64 * 64}
    mlp.update(raw.get("mlp", {}))
    unknown = [ch for ch in raw["pattern"] if ch not in LETTERS]
    if unknown or "layers" in raw:
        raise ValueError(f"{path}: only the layer letters {sorted(LETTERS)} are mirrored")
    c.update(name=raw.get("name", "model"), attention=attn, mamba2=m2, mlp=mlp,
             layers=[LETTERS[ch] for ch in raw["pattern"]])
    return c


def rms_norm(x, weight, eps):
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class Attention(nn.Module):
    """src/model/attention_mixer.cpp: q/k/v projections, RoPE (rotate_half), causal SDPA with
    GQA, output projection; no biases."""

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
        self.rope_cache = {}

    def init(self, n_layers, gen):
        for w in (self.wq, self.wk, self.wv):
            w.normal_(0, 0.02, generator=gen)
        self.wo.normal_(0, 0.02 / math.sqrt(2 * n_layers), generator=gen)

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
        return F.linear(o.transpose(1, 2).reshape(B, T, self.H * self.D), self.wo)


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


class Model(nn.Module):
    """src/model/model.cpp: embedding -> (x + mixer(rmsnorm(x))) per layer -> final RMSNorm ->
    LM head (tied to the embedding by default) -> mean cross-entropy."""

    MIXERS = {"attention": Attention, "mlp": MLP, "mamba2": Mamba2}

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
