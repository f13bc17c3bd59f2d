#!/usr/bin/env bash
# Installs what longctx needs to build and test, from Debian packages. Idempotent, and fast when
# everything is already present (no apt-get call at all then).
set -euo pipefail

# The GPU lease (scripts/gpu_suite.py) sets this: the device machine has no network and no apt,
# and what the build needs travels with the tree instead.
if [ "${LONGCTX_NO_SETUP:-0}" = 1 ]; then
  echo "setup: skipped (LONGCTX_NO_SETUP=1: packages come from the carried .lease folder)"
  exit 0
fi

packages=(
  cmake ninja-build g++            # build
  libgtest-dev                     # tests
  nlohmann-json3-dev               # JSON configs, safetensors headers
  libcli11-dev                     # the longctx command-line tool
  libopenblas-openmp-dev           # CPU GEMM (OpenMP build: shares the thread pool with our loops)
  libomp-dev                       # OpenMP for clang (the libFuzzer build)
  fortunes                         # a text corpus for the byte-level LM driver
  python3-matplotlib python3-numpy # bench/plot.py
  libopenmpi-dev openmpi-bin       # multi-process training (mpirun; the MPI Communicator)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found ($(command -v nvcc || echo /usr/local/cuda/bin/nvcc))"
else
  echo "setup: no CUDA toolkit: the CPU backend only will be built"
fi
