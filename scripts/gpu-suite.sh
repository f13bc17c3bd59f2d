#!/usr/bin/env bash
# The GPU lease plan: `bash scripts/gpu-suite.sh --plan` prints what the device runs and how it
# is prepared here; --help lists every mode. The logic is scripts/gpu_suite.py (Python standard
# library only: this machine's python3 and the device's both run it).
exec python3 "$(dirname "$0")/gpu_suite.py" "$@"
