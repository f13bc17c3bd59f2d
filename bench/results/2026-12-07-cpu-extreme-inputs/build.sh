#!/bin/sh
# usage (in this folder or decode-monarch/, after building the CPU library in build-cpu):
#   ../build.sh prog  or  ./build.sh prog
set -e
R=$(git rev-parse --show-toplevel)
HERE=$(cd "$(dirname "$0")" && pwd)
g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -I"$HERE" -I"$R/include" -I"$R/tests" -I"$R" "$1.cpp" -L"$R/build-cpu" -llongctx -lgtest -lpthread -Wl,-rpath,"$R/build-cpu" -o "$1"
