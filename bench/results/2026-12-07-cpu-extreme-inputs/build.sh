#!/bin/sh
# usage (from this folder, after building the CPU library in build-cpu): ./build.sh prog
set -e
R=$(git rev-parse --show-toplevel)
g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -I"$R/include" -I"$R/tests" -I"$R" "$1.cpp" -L"$R/build-cpu" -llongctx -lgtest -lpthread -Wl,-rpath,"$R/build-cpu" -o "$1"
