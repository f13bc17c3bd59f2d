// LD_PRELOAD probe: aligned_alloc of 2 MB or more gets a 2 MB-aligned block with
// madvise(MADV_HUGEPAGE) on the whole 2 MB pages inside it, so that transparent huge pages (mode
// "madvise" on this machine) back the library's large CPU tensors without rebuilding it. Used to
// A/B the same binary and library with and without huge pages.
//   g++ -O2 -shared -fPIC hugepage_preload.cpp -o hugepage_preload.so -ldl
#include <dlfcn.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

extern "C" void* aligned_alloc(size_t alignment, size_t size) {
  constexpr size_t kHuge = size_t(2) << 20;
  if (size < kHuge) {
    void* p = nullptr;
    return posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) ? nullptr
                                                                                           : p;
  }
  void* p = nullptr;
  if (posix_memalign(&p, kHuge, size)) return nullptr;
  madvise(p, size / kHuge * kHuge, MADV_HUGEPAGE);
  return p;
}
