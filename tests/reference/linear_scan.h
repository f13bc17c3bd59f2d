// Plain reference for linear_scan, templated on the arithmetic type S (see rmsnorm.h): a
// sequential loop h = a * h + b, written without the ScanPair operator so that it is an
// independent check of it. `round` is applied where a naive implementation stores out / da / db;
// states (last_state, dh0) are f32 tensors on every backend and are not rounded here.
#pragma once

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

struct LinearScanOut {
  Ref out, last_state;
};

// a, b: (B, T, D); h0: (B, D) or empty.
template <class S>
LinearScanOut linear_scan_fwd(const Ref& a, const Ref& b, const Ref& h0, const Round& round) {
  const int64_t B = a.shape[0], L = a.shape[1], D = a.shape[2];
  LinearScanOut r{Ref(a.shape), Ref({B, D})};
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      S h = h0.numel() ? S(h0[bi * D + d]) : S(0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (bi * L + t) * D + d;
        h = S(a[i]) * h + S(b[i]);
        r.out[i] = round(double(h));
      }
      r.last_state[bi * D + d] = double(h);
    }
  return r;
}

struct LinearScanGrads {
  Ref da, db, dh0;
};

// dout: (B, T, D); dlast_state: (B, D) or empty. The forward is recomputed in S.
template <class S>
LinearScanGrads linear_scan_bwd(const Ref& dout, const Ref& dlast_state, const Ref& a, const Ref& b,
                                const Ref& h0, const Round& round) {
  const int64_t B = a.shape[0], L = a.shape[1], D = a.shape[2];
  LinearScanGrads g{Ref(a.shape), Ref(a.shape), Ref(h0.numel() ? h0.shape : Shape{0})};
  std::vector<S> h(static_cast<size_t>(L));
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      const S hinit = h0.numel() ? S(h0[bi * D + d]) : S(0);
      S hc = hinit;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (bi * L + t) * D + d;
        hc = S(a[i]) * hc + S(b[i]);
        h[size_t(t)] = S(round(double(hc)));  // what a naive backward reads back: the stored out
      }
      S dh = dlast_state.numel() ? S(dlast_state[bi * D + d]) : S(0);
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t i = (bi * L + t) * D + d;
        dh += S(dout[i]);  // dh now = d loss / d h_t
        g.db[i] = round(double(dh));
        g.da[i] = round(double(dh * (t > 0 ? h[size_t(t - 1)] : hinit)));
        dh = S(a[i]) * dh;  // the part flowing into h_{t-1}
      }
      if (h0.numel()) g.dh0[bi * D + d] = double(dh);
    }
  return g;
}

}  // namespace longctx::ref
