// The associative operator of every recurrence h_t = a_t * h_{t-1} + b_t, written once for the
// CPU path, the tests and the CUDA scans.
//
//   (a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2),   identity (1, 0).
//
// Applying (a, b) to a state h gives a * h + b, so folding the pairs of steps 1..t (in order)
// and applying the result to h0 gives h_t. Associative, not commutative: the left operand is the
// earlier segment. Backward is the same scan run in reverse with the gates shifted by one:
// dh_t = dy_t + a_{t+1} * dh_{t+1}.
#pragma once

#if defined(__CUDACC__)
#define LONGCTX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LONGCTX_HOST_DEVICE inline
#endif

namespace longctx {

template <class T>
struct ScanPair {
  T a;  // cumulative decay of the segment
  T b;  // the segment's contribution from a zero state
};

template <class T>
LONGCTX_HOST_DEVICE ScanPair<T> scan_identity() {
  return {T(1), T(0)};
}

// `earlier` then `later`.
template <class T>
LONGCTX_HOST_DEVICE ScanPair<T> scan_combine(const ScanPair<T>& earlier, const ScanPair<T>& later) {
  return {earlier.a * later.a, later.a * earlier.b + later.b};
}

// The state after a segment, starting from h.
template <class T>
LONGCTX_HOST_DEVICE T scan_apply(const ScanPair<T>& segment, T h) {
  return segment.a * h + segment.b;
}

// Functor form for CUB's BlockScan / WarpScan.
struct ScanCombine {
  template <class T>
  LONGCTX_HOST_DEVICE ScanPair<T> operator()(const ScanPair<T>& earlier,
                                             const ScanPair<T>& later) const {
    return scan_combine(earlier, later);
  }
};

}  // namespace longctx
