// longctx: the command-line tool. `longctx info`, `longctx op ...`; later `train`, `bench`.
#include <cstdio>
#include <cstring>
#include <string>

#include "longctx/longctx.h"

int main(int argc, char** argv) {
  using namespace longctx;
  if (argc >= 2 && std::strcmp(argv[1], "info") == 0) {
    BuildInfo b = build_info();
    std::printf("longctx %s\ncuda backend: %s\n", b.version.c_str(), b.cuda ? "yes" : "no");
    return 0;
  }
  std::fprintf(stderr, "usage: longctx info\n");
  return 2;
}
