// Model-level: cached decoding (decode_one prefills of different lengths, then decode() of the
// whole batch over hundreds of steps, with chunks of 1..5 tokens) against Model::forward over each
// whole sequence. f64 models: error / max(1, |logits|) should be ~1e-13 (the tests use 1e-11).
//   ./p_model [preset-name|all] [Ltot] [f32]
#include <filesystem>
#include "longctx/model/config.h"
#include "longctx/model/model.h"
#include "probe.h"
using namespace P;

static Tensor toks(int64_t T, int64_t V, Rng& rng) {
  Tensor t = Tensor::empty({1, T}, DType::i32);
  for (int64_t i = 0; i < T; ++i) t.data_as<int32_t>()[i] = int32_t(rng.integer(0, V - 1));
  return t;
}

struct Worst {
  double err = 0, scale = 0;
  int64_t b = -1, pos = -1;
  std::string phase;
};

static void run(Context& ctx, const std::string& name, ModelConfig cfg, std::vector<int64_t> prompt,
                int64_t Ltot, std::vector<int64_t> chunks, int64_t max_len_extra, DType dt,
                double pscale = 1, bool interleave = false) {
  Model model(cfg, ctx, dt, /*seed=*/5);
  if (pscale != 1) {  // "trained-like" weights: every parameter scaled (norm weights too)
    Ref f = to_ref(model.params().flat());
    for (double& x : f.v) x *= pscale;
    model.params().flat().copy_from(from_ref(f, dt));
  }
  const int64_t B = int64_t(prompt.size()), V = cfg.vocab_size;
  Rng rng(42);
  std::vector<Tensor> seqs;
  std::vector<Ref> full;
  const int64_t steps = Ltot - *std::max_element(prompt.begin(), prompt.end());
  for (int64_t b = 0; b < B; ++b) {
    seqs.push_back(toks(prompt[size_t(b)] + steps, V, rng));
    model.forward(seqs.back());
    full.push_back(to_ref(model.logits()));
  }
  // For f32, the f64 model with the same parameters gives the exact logits.
  std::vector<Ref> exact;
  if (dt != DType::f64) {
    Model m64(cfg, ctx, DType::f64, 5);
    for (size_t i = 0; i < m64.params().tensors().size(); ++i)
      m64.params().tensors()[i].tensor.copy_from(
          model.params().tensors()[i].tensor.to_dtype(DType::f64));
    for (int64_t b = 0; b < B; ++b) {
      m64.forward(seqs[size_t(b)]);
      exact.push_back(to_ref(m64.logits()));
    }
  }
  Worst w;
  std::vector<double> g, e, n;  // for f32: got, exact, naive(full f32 forward)
  auto check = [&](const Ref& got, int64_t row, int64_t b, int64_t from, int64_t cnt,
                   const char* phase) {
    const int64_t T = got.shape[1];
    const Ref& f = full[size_t(b)];
    for (int64_t t = 0; t < cnt; ++t) {
      double err = 0, sc = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double want = f[(from + t) * V + v], have = got[(row * T + t) * V + v];
        double d = std::abs(have - want);
        if (!std::isfinite(d)) d = INFINITY;
        err = std::max(err, d);
        sc = std::max(sc, std::abs(want));
        if (dt != DType::f64) {
          g.push_back(have);
          e.push_back(exact[size_t(b)][(from + t) * V + v]);
          n.push_back(want);
        }
      }
      const double rel = err / std::max(1.0, sc);
      if (rel > w.err || std::isnan(rel)) {
        w.err = rel;
        w.scale = sc;
        w.b = b;
        w.pos = from + t;
        w.phase = phase;
      }
    }
  };
  ModelCache cache;
  bool threw = false;
  guard((name + " make_cache").c_str(), [&] { cache = model.make_cache(B, Ltot + max_len_extra); });
  for (int64_t b = 0; b < B && !threw; ++b) {
    if (prompt[size_t(b)] == 0) continue;
    Tensor part = Tensor::empty({1, prompt[size_t(b)]}, DType::i32);
    part.copy_from(seqs[size_t(b)].narrow(1, 0, prompt[size_t(b)]));
    try {
      check(to_ref(model.decode_one(cache, b, part)), 0, b, 0, prompt[size_t(b)], "prefill");
    } catch (const std::exception& ex) {
      printf("**THROW** %s decode_one: %s\n", name.c_str(), ex.what());
      g_flags++;
      threw = true;
    }
  }
  int64_t s = 0;
  size_t ci = 0;
  while (s < steps && !threw) {
    const int64_t c = std::min(chunks[ci++ % chunks.size()], steps - s);
    Tensor next = Tensor::empty({B, c}, DType::i32);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < c; ++t)
        next.data_as<int32_t>()[b * c + t] =
            seqs[size_t(b)].data_as<int32_t>()[prompt[size_t(b)] + s + t];
    if (interleave && s % 7 == 3)
      model.forward(toks(33, V, rng));  // an unrelated forward between steps
    try {
      const Ref got = to_ref(model.decode(cache, next));
      for (int64_t b = 0; b < B; ++b) check(got, b, b, prompt[size_t(b)] + s, c, "decode");
    } catch (const std::exception& ex) {
      printf("**THROW** %s decode at step %lld: %s\n", name.c_str(), (long long)s, ex.what());
      g_flags++;
      threw = true;
    }
    s += c;
  }
  const double lim = dt == DType::f64 ? 1e-11 : 1e-3;
  const bool bad = !(w.err <= lim);
  if (bad) g_flags++;
  printf(
      "%s %-40s %s B=%lld steps=%lld  max|decode-forward|/max(1,|logit|)=%.3g at seq %lld pos %lld "
      "(%s)\n",
      bad ? "**BAD**" : "  ok   ", name.c_str(), dtype_name(dt), (long long)B, (long long)steps,
      w.err, (long long)w.b, (long long)w.pos, w.phase.c_str());
  if (dt != DType::f64 && !g.empty()) {
    Ref G({int64_t(g.size())}), E({int64_t(g.size())}), N({int64_t(g.size())});
    G.v = g;
    E.v = e;
    N.v = n;
    cmp((name + " f32 decode vs f64 forward (naive=f32 forward)").c_str(), G, E, &N, DType::f32);
  }
  fflush(stdout);
}

int main(int argc, char** argv) {
  std::string only = argc > 1 ? argv[1] : "all";
  const int64_t Ltot = argc > 2 ? atoll(argv[2]) : 600;
  const DType dt = argc > 3 && std::string(argv[3]) == "f32" ? DType::f32 : DType::f64;
  Context ctx(Device::cpu());
  if (only == "variants") {
    const char* base = R"("vocab_size": 97, "d_model": 48, "tie_embeddings": false, )";
    std::vector<std::pair<std::string, std::string>> v = {
        {"mamba_dconv1", R"("pattern": "M-M", "mamba": {"d_state": 5, "d_conv": 1, "expand": 1})"},
        {"mamba_dconv2",
         R"("pattern": "MM", "mamba": {"d_state": 7, "d_conv": 2, "expand": 3, "dt_rank": 5})"},
        {"mamba2_dconv1_g2_chunk7",
         R"("pattern": "SS", "mamba2": {"d_state": 6, "head_dim": 8, "expand": 2, "n_groups": 2, "d_conv": 1, "chunk_size": 7})"},
        {"mamba2_dconv3_chunk1",
         R"("pattern": "S-S", "mamba2": {"d_state": 16, "head_dim": 12, "expand": 1, "n_groups": 4, "d_conv": 3, "chunk_size": 1})"},
        {"rglru_dconv1", R"("pattern": "R-R", "rglru": {"width": 40, "d_conv": 1})"},
        {"rglru_dconv3", R"("pattern": "RR", "rglru": {"width": 96, "d_conv": 3})"},
        {"gdn_dconv1_K4",
         R"("pattern": "GG", "deltanet": {"n_heads": 2, "n_v_heads": 6, "head_k_dim": 4, "head_v_dim": 5, "d_conv": 1, "chunk_size": 3})"},
        {"kda_dconv2",
         R"("pattern": "K-K", "deltanet": {"n_heads": 3, "head_k_dim": 16, "head_v_dim": 8, "d_conv": 2, "chunk_size": 64})"},
        {"window1",
         R"("pattern": "W-W", "attention": {"n_heads": 3, "n_kv_heads": 1, "window": 1})"},
        {"window2",
         R"("pattern": "W*", "attention": {"n_heads": 3, "n_kv_heads": 3, "window": 2})"},
        {"window_gt_maxlen",
         R"("pattern": "WW", "attention": {"n_heads": 4, "n_kv_heads": 2, "window": 100000})"},
        {"window_eq_100",
         R"("pattern": "W-W", "attention": {"n_heads": 2, "n_kv_heads": 2, "window": 100, "gated": true})"},
        {"attn_D40_theta1e6",
         R"("pattern": "**", "attention": {"n_heads": 3, "n_kv_heads": 1, "rope_theta": 1000000})"},
        {"monarch_nblocks48",
         R"("pattern": "*-", "attention": {"n_heads": 4, "n_kv_heads": 2}, "mlp": {"kind": "monarch", "nblocks": 48, "hidden": 96})"},
        {"monarch_nblocks1",
         R"("pattern": "-*-", "attention": {"n_heads": 4, "n_kv_heads": 4}, "mlp": {"kind": "monarch", "nblocks": 1, "hidden": 80})"},
    };
    for (auto& [nm, js] : v) {
      ModelConfig cfg;
      try {
        cfg = ModelConfig::from_json(std::string("{") + base + js + "}");
      } catch (const std::exception& e) {
        printf("config %s refused: %s\n", nm.c_str(), e.what());
        continue;
      }
      run(ctx, nm + "/prompts0,1,100", cfg, {0, 1, 100}, Ltot, {1, 1, 3, 1, 7}, 0, dt, 3.0);
      run(ctx, nm + "/prompts2,150/maxlen=Ltot", cfg, {2, 150}, Ltot, {1}, 0, dt);
      // a cache shorter than the window: max_len = Ltot, Ltot small
      run(ctx, nm + "/short_run", cfg, {1, 4}, 12, {1, 2}, 0, dt, 3.0);
    }
    printf("flags=%d\n", g_flags);
    return 0;
  }
  std::vector<std::string> paths;
  for (auto& e : std::filesystem::directory_iterator("/work/main/models/presets"))
    paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (auto& p : paths) {
    ModelConfig cfg = ModelConfig::load(p);
    if (only != "all" && only != cfg.name) continue;
    run(ctx, cfg.name + "/prompts1,37,260/chunks1", cfg, {1, 37, 260}, Ltot, {1}, 0, dt);
    run(ctx, cfg.name + "/prompts5,300/chunks1,2,5,1,3", cfg, {5, 300}, Ltot, {1, 2, 5, 1, 3}, 7,
        dt);
    run(ctx, cfg.name + "/x8weights/prompts0,2,257/chunks1,4", cfg, {0, 2, 257}, Ltot, {1, 1, 1, 4},
        0, dt, 8.0);
    run(ctx, cfg.name + "/x8weights/interleaved-forward", cfg, {3, 255},
        std::min<int64_t>(Ltot, 400), {1, 256, 1, 2}, 0, dt, 8.0, true);
  }
  printf("flags=%d\n", g_flags);
}
