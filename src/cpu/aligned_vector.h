// std::vector with 64-byte aligned storage, for the CPU ops' scratch buffers.
//
// std::vector's memory is malloc's, only 16-byte aligned (glibc; its mmap'd large blocks sit 16
// bytes past a page): a buffer 16, 32 or 48 bytes past a cache line makes every zmm load and store
// of its rows (of a 64-byte multiple stride) touch two lines. With this allocator a buffer starts
// a line. Alignment changes no arithmetic: the same bits.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace longctx::cpu {

template <class T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <class U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const LineAligned<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const LineAligned<U>&) const {
    return false;
  }
};

template <class T>
using LineVector = std::vector<T, LineAligned<T>>;

}  // namespace longctx::cpu
