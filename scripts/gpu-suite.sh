#!/usr/bin/env bash
# The GPU suite: run from the repository root on a machine with an NVIDIA GPU, the CUDA toolkit
# and PyTorch (no network, no apt needed):
#
#   bash scripts/gpu-suite.sh [--dry-run] [--steps build,test,memcheck,racecheck,bench]
#
# Steps (all by default, in this order; each can be run alone, e.g. to stay under a time limit
# per command — results of earlier runs into the same $OUT are kept and summarised together):
#   build      configure with -DLONGCTX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS into
#              $BUILD_DIR and build everything
#   test       ctest, every test (the CUDA ones run here instead of skipping)
#   memcheck   compute-sanitizer --tool memcheck on the gtest binary filtered to CUDA cases
#   racecheck  the same with --tool racecheck
#   bench      attention (bf16, head dims 128 and 64, the full sweep), PyTorch SDPA's flash,
#              cuDNN and efficient backends over the same sweep side by side with it
#              (bench/sdpa.py), the scan ops (bench_scan), and the length-scaling comparison
#              (`longctx bench scaling`), the MQAR preset in bf16 mixed precision
#              (scripts/mqar.sh); each run's output in $OUT/bench/NAME.log, results in
#              NAME.json
# Writes logs and summary.json (date, commit, device, tests passed/failed/skipped, sanitizer
# errors, benchmarks) into $OUT. Exits non-zero when any step that ran failed.
#
# --dry-run checks this script's logic on a machine without a GPU: a CPU-only build
# (LONGCTX_CUDA=OFF), no nvidia-smi; the sanitizer steps run only if $COMPUTE_SANITIZER names a
# stand-in tool, and are recorded as skipped otherwise.
#
# Environment: OUT (./gpu-suite-out), BUILD_DIR (build-gpu; build-gpu-dry with --dry-run),
# CUDA_ARCHS (90a), JOBS (nproc), GTEST_CUDA_FILTER ('*cuda*:*Cuda*:*CUDA*'),
# COMPUTE_SANITIZER (found on PATH or in /usr/local/cuda/bin), SANITIZER_TIMEOUT (3000 s per
# tool), BENCH_ARGS (extra benchmark arguments, none by default), BENCH_TIMEOUT (1800 s each).
set -uo pipefail

dry_run=0
steps="build,test,memcheck,racecheck,bench"
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --steps) steps="${2:?--steps needs a list}"; shift ;;
    --steps=*) steps="${1#--steps=}" ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-suite: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in ${steps//,/ }; do
  case "$s" in build | test | memcheck | racecheck | bench) ;;
    *) echo "gpu-suite: unknown step '$s' (build, test, memcheck, racecheck, bench)" >&2; exit 2 ;;
  esac
done
want() { [[ ",$steps," == *",$1,"* ]]; }

root="$(pwd)"
if [ ! -f "$root/CMakeLists.txt" ] || [ ! -d "$root/include/longctx" ]; then
  echo "gpu-suite: run from the longctx repository root" >&2
  exit 2
fi
out="${OUT:-$root/gpu-suite-out}"
mkdir -p "$out/steps" "$out/bench"
out="$(cd "$out" && pwd)"
if ((dry_run)); then build="${BUILD_DIR:-$root/build-gpu-dry}"; else build="${BUILD_DIR:-$root/build-gpu}"; fi
jobs="${JOBS:-$(nproc)}"
archs="${CUDA_ARCHS:-90a}"
gtest_filter="${GTEST_CUDA_FILTER:-*cuda*:*Cuda*:*CUDA*}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

log() { echo "[gpu-suite $(date +%H:%M:%S)] $*"; }

# A JSON string literal of $1.
json_str() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  s="$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')"
  printf '"%s"' "$s"
}
# A JSON list of strings, one per line of $1.
json_lines() {
  local first=1 line
  printf '['
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    ((first)) || printf ', '
    first=0
    json_str "$line"
  done <<<"$1"
  printf ']'
}
# Records one step's result: step_result NAME JSON-OBJECT.
step_result() { printf '%s\n' "$2" >"$out/steps/$1.json"; }

failed_steps=0

# ---- build -------------------------------------------------------------------------------------
if want build; then
  cuda=ON
  ((dry_run)) && cuda=OFF
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  log "build: LONGCTX_CUDA=$cuda, architectures $archs, into $build (log: $out/build.log)"
  start=$(date +%s)
  {
    cmake -S "$root" -B "$build" "${generator[@]}" -DLONGCTX_CUDA="$cuda" \
      -DCMAKE_CUDA_ARCHITECTURES="$archs" -DCMAKE_BUILD_TYPE=Release &&
      cmake --build "$build" -j "$jobs"
  } >"$out/build.log" 2>&1
  status=$?
  secs=$(($(date +%s) - start))
  if ((status)); then
    failed_steps=$((failed_steps + 1))
    log "build FAILED (exit $status); last lines:"
    tail -20 "$out/build.log"
  fi
  step_result build "{\"status\": $(json_str "$([ $status = 0 ] && echo ok || echo failed)"), \"exit_code\": $status, \"seconds\": $secs, \"cuda\": $(json_str $cuda), \"architectures\": $(json_str "$archs")}"
fi

tests_bin="$build/tests/longctx_tests"

# ---- test --------------------------------------------------------------------------------------
if want test; then
  log "test: ctest -j $jobs (log: $out/ctest.log)"
  start=$(date +%s)
  (cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 1800) >"$out/ctest.log" 2>&1
  status=$?
  secs=$(($(date +%s) - start))
  # "NN% tests passed, F tests failed out of T"; every skipped test prints "***Skipped".
  summary_line="$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$out/ctest.log" | tail -1)"
  total="$(sed -nE 's/.*failed out of ([0-9]+).*/\1/p' <<<"$summary_line")"
  failed="$(sed -nE 's/.*passed, ([0-9]+) tests? failed.*/\1/p' <<<"$summary_line")"
  skipped="$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$out/ctest.log")"
  failed_names="$(sed -nE 's/^[[:space:]]*[0-9]+ - (.*) \((Failed|Timeout|SEGFAULT|Child aborted|Exception|Not Run)\).*/\1/p' "$out/ctest.log")"
  if [ -z "$total" ]; then
    total=0 failed=0 skipped=0
    ((status)) || status=1
    log "test: no ctest summary line found (did the build run?)"
  fi
  passed=$((total - failed - skipped))
  ((status)) && failed_steps=$((failed_steps + 1))
  log "test: $passed passed, $failed failed, $skipped skipped (of $total) in ${secs}s"
  step_result test "{\"status\": $(json_str "$([ $status = 0 ] && echo ok || echo failed)"), \"exit_code\": $status, \"seconds\": $secs, \"total\": $total, \"passed\": $passed, \"failed\": $failed, \"skipped\": $skipped, \"failed_tests\": $(json_lines "$failed_names")}"
fi

# ---- compute-sanitizer -------------------------------------------------------------------------
sanitizer="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
run_sanitizer() {
  local tool="$1" logfile="$out/$1.log"
  if ((dry_run)) && [ -z "${COMPUTE_SANITIZER:-}" ]; then
    log "$tool: skipped (dry run without a GPU)"
    step_result "$tool" '{"status": "skipped", "reason": "dry run"}'
    return
  fi
  if [ -z "$sanitizer" ] || [ ! -x "$tests_bin" ]; then
    local why="compute-sanitizer not found"
    [ -x "$tests_bin" ] || why="no test binary at $tests_bin (run the build step)"
    log "$tool: FAILED: $why"
    failed_steps=$((failed_steps + 1))
    step_result "$tool" "{\"status\": \"failed\", \"reason\": $(json_str "$why")}"
    return
  fi
  log "$tool: $sanitizer --tool $tool on $tests_bin --gtest_filter='$gtest_filter' (log: $logfile)"
  local start status secs
  start=$(date +%s)
  # --error-exitcode makes a reported error fail the run even when the tests themselves pass.
  timeout "${SANITIZER_TIMEOUT:-3000}" "$sanitizer" --tool "$tool" --error-exitcode 86 \
    --log-file "$logfile.tool" "$tests_bin" --gtest_filter="$gtest_filter" \
    >"$logfile" 2>&1
  status=$?
  secs=$(($(date +%s) - start))
  [ -f "$logfile.tool" ] && { cat "$logfile.tool" >>"$logfile"; rm -f "$logfile.tool"; }
  # "========= ERROR SUMMARY: N errors"
  local errors
  errors="$(sed -nE 's/.*ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$logfile" | awk '{s += $1} END {print s + 0}')"
  local summary_found
  summary_found=$(grep -c 'ERROR SUMMARY' "$logfile")
  local gtest_line
  gtest_line="$(grep -E '^\[  (PASSED|FAILED)  \]' "$logfile" | head -2 | tr '\n' ' ')"
  local result=ok
  if ((status)) || ((errors)) || ((summary_found == 0)); then
    result=failed
    failed_steps=$((failed_steps + 1))
  fi
  ((status == 124)) && result=timeout
  log "$tool: $result, $errors errors, exit $status, ${secs}s; gtest: $gtest_line"
  step_result "$tool" "{\"status\": $(json_str $result), \"exit_code\": $status, \"seconds\": $secs, \"errors\": $errors, \"gtest\": $(json_str "$gtest_line"), \"filter\": $(json_str "$gtest_filter")}"
}
want memcheck && run_sanitizer memcheck
want racecheck && run_sanitizer racecheck

# ---- bench -------------------------------------------------------------------------------------
# Each run: a name and its command (run in $OUT/bench, output in NAME.log, results in NAME.json).
# On the GPU: attention bf16 at head dims 128 and 64 over the full sweep, PyTorch SDPA over the
# same sweep (flash, cuDNN, efficient) side by side with longctx, the scan ops, and the main job
# (the length-scaling comparison). With --dry-run the same runs go to the CPU, shortened.
if want bench; then
  dev=cuda
  attn_sweep="--full"
  scaling_args=""
  if ((dry_run)); then
    dev=cpu
    attn_sweep="--tokens 1024 --hd 256 --reps 1 --no-naive"
    scaling_args="--lengths 128 256 --tokens 256 --repeats 1 --presets llama"
  fi
  attn_dtype=bf16
  ((dry_run)) && attn_dtype=f32
  runs_names=()
  runs_cmds=()
  add_run() { runs_names+=("$1"); runs_cmds+=("$2"); }
  if [ -x "$build/bench/bench_attention" ]; then
    for d in 128 64; do
      add_run "attention_${attn_dtype}_d$d" "'$build/bench/bench_attention' --device $dev --dtype $attn_dtype --head-dim $d $attn_sweep --json attention_${attn_dtype}_d$d.json ${BENCH_ARGS:-}"
    done
    # SDPA needs torch with CUDA; it exits 2 with the reason otherwise (recorded, not hidden).
    ((dry_run)) || add_run sdpa_bf16_d128 "python3 '$root/bench/sdpa.py' --dtype bf16 --head-dim 128 --longctx attention_bf16_d128.json --json sdpa_bf16_d128.json"
  fi
  [ -x "$build/bench/bench_scan" ] &&
    add_run scan "'$build/bench/bench_scan' --device $dev $([ $dry_run = 1 ] && echo '--max-t 2048 --reps 1') --json scan.json ${BENCH_ARGS:-}"
  # The MQAR CPU preset on the GPU in bf16 mixed precision (its README column); a few minutes.
  [ -x "$build/longctx" ] && ((!dry_run)) &&
    add_run mqar_bf16 "BUILD_DIR='$build' CUDA_ARCHS='$archs' OUT_DIR='$out/bench/mqar_bf16' DEVICE=cuda PRECISION=bf16 bash '$root/scripts/mqar.sh'"
  [ -x "$build/longctx" ] &&
    add_run scaling "'$build/longctx' bench scaling --device $dev --presets-dir '$root/models/presets' $scaling_args --out scaling.json"
  entries=()
  if ((${#runs_names[@]} == 0)); then
    log "bench: no benchmark executables under $build: skipped"
    step_result bench '{"status": "skipped", "reason": "no benchmarks built", "runs": []}'
  else
    bench_failed=0
    for i in "${!runs_names[@]}"; do
      name="${runs_names[$i]}"
      log "bench: $name: ${runs_cmds[$i]} (log: $out/bench/$name.log)"
      start=$(date +%s)
      (cd "$out/bench" && eval "timeout ${BENCH_TIMEOUT:-1800} ${runs_cmds[$i]}") >"$out/bench/$name.log" 2>&1
      status=$?
      ((status)) && bench_failed=1
      results=null
      [ -f "$out/bench/$name.json" ] && results="$(json_str "$out/bench/$name.json")"
      entries+=("{\"name\": $(json_str "$name"), \"command\": $(json_str "${runs_cmds[$i]}"), \"exit_code\": $status, \"seconds\": $(($(date +%s) - start)), \"results\": $results}")
    done
    ((bench_failed)) && failed_steps=$((failed_steps + 1))
    runs="$(IFS=,; echo "${entries[*]}")"
    step_result bench "{\"status\": $(json_str "$([ $bench_failed = 0 ] && echo ok || echo failed)"), \"runs\": [$runs]}"
  fi
fi

# ---- summary.json: this run's facts and every step recorded in $OUT ----------------------------
commit="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -1)"
if ((dry_run)); then
  device="none (dry run)"
  driver=""
else
  device="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
  [ -z "$device" ] && device="unknown (nvidia-smi failed)"
fi
nvcc_version="$(nvcc --version 2>/dev/null | sed -nE 's/.*release ([0-9.]+).*/\1/p')"
step_json=""
for s in build test memcheck racecheck bench; do
  f="$out/steps/$s.json"
  if [ -f "$f" ]; then v="$(cat "$f")"; else v='{"status": "not run"}'; fi
  step_json+="${step_json:+, }\"$s\": $v"
done
cat >"$out/summary.json" <<EOF
{
  "date": $(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),
  "commit": $(json_str "$commit"),
  "dirty": $([ -n "$dirty" ] && echo true || echo false),
  "device": $(json_str "$device"),
  "driver": $(json_str "$driver"),
  "cuda_toolkit": $(json_str "$nvcc_version"),
  "dry_run": $([ $dry_run = 1 ] && echo true || echo false),
  "steps_run": $(json_str "$steps"),
  "steps": {$step_json}
}
EOF
log "summary: $out/summary.json"
cat "$out/summary.json"
if ((failed_steps)); then
  log "$failed_steps step(s) failed"
  exit 1
fi
