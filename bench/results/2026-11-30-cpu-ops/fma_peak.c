// f32 FMA peak probe: 16 independent 512-bit (or 256-bit with -DW=256) FMA chains per thread.
// gcc -O2 -mavx512f -fopenmp fma_peak.c -o fma_peak && OMP_NUM_THREADS=2 ./fma_peak
// gcc -O2 -DW=256 -mavx2 -mfma -fopenmp fma_peak.c -o fma_peak256   (16 ymm registers: spills, a lower bound)
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <omp.h>
#ifndef W
#define W 512
#endif
#if W==512
typedef __m512 V; 
#define SET _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define LANES 16
static float red(V v){return _mm512_reduce_add_ps(v);}
#else
typedef __m256 V;
#define SET _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define LANES 8
static float red(V v){float f[8];_mm256_storeu_ps(f,v);return f[0];}
#endif
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  const long iters=100000000;
  for(int rep=0;rep<3;rep++){
  double t0=now(); float sink=0;
  #pragma omp parallel reduction(+:sink)
  {
    V m=SET(0.999999f), c=SET(1e-7f);
    V a0=SET(0),a1=SET(1),a2=SET(2),a3=SET(3),a4=SET(4),a5=SET(5),a6=SET(6),a7=SET(7),a8=SET(8),a9=SET(9),a10=SET(10),a11=SET(11),a12=SET(12),a13=SET(13),a14=SET(14),a15=SET(15);
    for(long it=0;it<iters;it++){
      __asm__ volatile("" : "+v"(a0),"+v"(a1),"+v"(a2),"+v"(a3),"+v"(a4),"+v"(a5),"+v"(a6),"+v"(a7));
      a0=FMA(a0,m,c);a1=FMA(a1,m,c);a2=FMA(a2,m,c);a3=FMA(a3,m,c);a4=FMA(a4,m,c);a5=FMA(a5,m,c);a6=FMA(a6,m,c);a7=FMA(a7,m,c);
      a8=FMA(a8,m,c);a9=FMA(a9,m,c);a10=FMA(a10,m,c);a11=FMA(a11,m,c);a12=FMA(a12,m,c);a13=FMA(a13,m,c);a14=FMA(a14,m,c);a15=FMA(a15,m,c);
    }
    V s=ADD(ADD(ADD(a0,a1),ADD(a2,a3)),ADD(ADD(a4,a5),ADD(a6,a7)));
    s=ADD(s,ADD(ADD(ADD(a8,a9),ADD(a10,a11)),ADD(ADD(a12,a13),ADD(a14,a15))));
    sink+=red(s);
  }
  double dt=now()-t0;
  printf("W=%d %.1f GFLOP/s (sink %g)\n",W,2.0*LANES*16*iters*omp_get_max_threads()/dt/1e9,sink);
  }
}
