// Counts malloc calls (LD_PRELOAD=./mcount.so): gcc -O2 -shared -fPIC -o mcount.so mcount.c
#include <stdio.h>
#include <stdlib.h>
extern void* __libc_malloc(size_t);
static long n;
void* malloc(size_t s) {
  n++;
  return __libc_malloc(s);
}
__attribute__((destructor)) static void fin(void) {
  fprintf(stderr, "mallocs %ld\n", n);
}
