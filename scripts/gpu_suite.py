#!/usr/bin/env python3
"""The GPU lease plan: what a session lent the device machine (one H100 or H200, sm_90a, 16
cores, no network, 15 minutes of device time in all, at most 10 minutes a command, 8 files back)
runs, in two
calls, and what is prepared here beforehand so that nothing on the device needs apt or a network.

  bash scripts/gpu-suite.sh --plan            each call's `run` invocation, steps and budgets
  bash scripts/gpu-suite.sh --prepare         (here) .lease/deps.tar.xz: the Debian packages the
                                              device image lacks (GoogleTest, nlohmann/json,
                                              CLI11, OpenBLAS and its Fortran runtime), pruned;
                                              .lease/wheels: fla's wheel, for call 2 (pip)
  bash scripts/gpu-suite.sh --prebuild        (here, recommended) .lease/build.tar.xz: the sm_90a
                                              binaries built here; call 1 tries them first and
                                              builds there when they do not run
  bash scripts/gpu-suite.sh --call 1          (device) correctness: build, every CUDA test case
                                              with a per-case timeout, memcheck on a named set
                                              covering every kernel, racecheck per kernel family
  bash scripts/gpu-suite.sh --call 2          (device) measurement: attention vs PyTorch SDPA,
                                              the gated delta rule vs fla, decode and the scans
                                              against the copy floor, one training step of three
                                              presets at 8k and 32k
  bash scripts/gpu-suite.sh --call N --dry-run   the same logic and packaging on the CPU here
  bash scripts/gpu-suite.sh --measure         (here) refresh scripts/gpu-lease-measurements.json,
                                              the measurements the budgets derive from
  bash scripts/gpu-suite.sh --collect DIR...  (here, after) the files the calls brought back into
                                              bench/results/<date>-<gpu>-<commit>/ (h100, h200)

--hide-system (with --call or --configure-only) runs the step in a private mount namespace in
which every file of the packages carried in .lease/deps.tar.xz is hidden from /usr (an overlay
of whiteouts): the proof, here, that the build needs only what the device image has plus what is
carried. Files come back in $OUT (default out/gpu-suite): call 1 summary-1.json, table-1.md,
logs-1.tar.gz and build-1.tar.xz (its binaries, for a call 2 on a fresh machine); call 2
results-2.json, table-2.md, logs-2.tar.gz.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEASE = ROOT / ".lease"  # the carried folder (ignored by git)
DEPS_ARCHIVE = LEASE / "deps.tar.xz"
DEPS_MANIFEST = LEASE / "deps.json"
COMMIT_RECORD = LEASE / "commit.json"
BUILD_ARCHIVE = LEASE / "build.tar.xz"
MEASUREMENTS = ROOT / "scripts" / "gpu-lease-measurements.json"
WORK = ROOT / ".lease-work"  # per-call scratch on the device (ignored)
DEPS_DIR = Path(os.environ.get("LEASE_DEPS_DIR", "/tmp/longctx-lease-deps"))

# What the device image lacks, from Debian 12 (this machine's release, older than the device's
# Ubuntu 24.04, so its libraries run there). Runtime libraries ride along with the -dev ones.
PACKAGES = [
    "libgtest-dev",
    "nlohmann-json3-dev",
    "libcli11-dev",
    "libopenblas-openmp-dev",
    "libopenblas0-openmp",
    "libgfortran5",
    "libquadmath0",
]
# Hidden too by --hide-system: installed here beside the carried ones, absent there.
HIDDEN_EXTRA = ["googletest"]
# Kept from the unpacked packages (globs under the staging root); the rest (static OpenBLAS,
# 58 MB; the LAPACK and BLAS alternatives, 7.7 MB; docs) is not needed to build or run.
KEEP = [
    "usr/include/gtest",
    "usr/include/nlohmann",
    "usr/include/CLI",
    "usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h",
    "usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h",
    "usr/lib/x86_64-linux-gnu/libgtest*.a",
    "usr/lib/x86_64-linux-gnu/cmake/GTest",
    "usr/lib/x86_64-linux-gnu/libgfortran.so.5*",
    "usr/lib/x86_64-linux-gnu/libquadmath.so.0*",
    "usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas*.so*",
    "usr/share/cmake/nlohmann_json",
    "usr/share/cmake/CLI11",
]
# The links Debian's update-alternatives would make for libopenblas0-openmp, relative so that
# the tree can live anywhere: (link, target).
ALTERNATIVES = [
    ("usr/lib/x86_64-linux-gnu/libopenblas.so", "openblas-openmp/libopenblas.so"),
    ("usr/lib/x86_64-linux-gnu/libopenblas.so.0", "openblas-openmp/libopenblas.so.0"),
    ("usr/include/x86_64-linux-gnu/cblas.h", "openblas-openmp/cblas.h"),
    ("usr/include/x86_64-linux-gnu/openblas_config.h", "openblas-openmp/openblas_config.h"),
]

# flash-linear-attention, the peer of the gated delta rule (issue 16), for call 2's fla runs: a
# pure-Python wheel, installed there with pip --no-index --target (the device tool's README).
# fla-core holds fla.ops (chunk_gated_delta_rule, chunk_kda); the flash-linear-attention wheel
# of the same version adds only fla/layers and fla/models, which the benchmark does not use and
# which would make `import fla` import transformers. fla-core 0.6.0 needs torch >= 2.7, triton
# >= 3.3, einops and (undeclared) packaging: the image has torch 2.11, triton 3.6, einops and
# packaging (KINDS.md), so nothing else travels. Needed by no build, test or main job.
WHEELS = ["fla-core==0.6.0"]
WHEELS_DIR = LEASE / "wheels"
FLA_SITE = Path("/tmp/longctx-lease-fla")  # where call 2 installs them

CUDA_ARCHS = "90a"
# The build targets each call needs (the test binary depends on the CLI, which its tests run).
TARGETS = {
    1: ["longctx_tests", "longctx_cli", "bench_attention", "bench_scan", "bench_gdn"],
    2: ["longctx_cli", "bench_attention", "bench_scan", "bench_gdn"],
}
BINARIES = [
    "liblongctx.so*",
    "longctx",
    "tests/longctx_tests",
    "bench/bench_attention",
    "bench/bench_scan",
    "bench/bench_gdn",
]

# Every CUDA test case: the harness names CUDA cases *_cuda_<dtype> (tests/harness.h) and the
# plain tests say Cuda/CUDA in their names; the few tests that touch the GPU when one is there
# without saying so are added by name.
CUDA_FILTER = (
    "*cuda*:*Cuda*:*CUDA*:PeakMemory.Device*:AttentionBadInput.*:"
    "Cli.InfoReportsBuildAndDevices:CliErrors.BadFilesAndDevices"
)

DECODE = "Cases/AttentionDecode.MatchesFullAttentionOverTheCache/"
GDR_DECODE = "Cases/GatedDeltaRuleDecode.ChunkedPrefixThenStepsMatchReference/"
# compute-sanitizer memcheck: one small case per kernel (file and template family), so that
# every kernel runs once under it. Names as in `longctx_tests --gtest_list_tests`.
MEMCHECK = [
    "Context.CudaRoundTripWhenPresent",  # runtime: copies, fill, casts
    "MatmulPrecision.CudaToDtypeRoundsLikeTheCpu",  # runtime: dtype conversion
    "Backends/Add.MatchesReference/cuda_bf16",  # nn/add
    "Backends/NegExp.MatchesReference/cuda_f16",  # nn/elementwise
    "Cases/SwiGLU.MatchesReference/flat_odd_cuda_bf16",  # nn/swiglu
    "Cases/Rope.MatchesReference/gqa_kv_decode_at_1000_cuda_f32",  # nn/rope
    "Cases/AdamW.MatchesReference/clipped_grads_cuda_f32",  # nn/adamw (+ gradient norm)
    "Cases/Linear.MatchesReference/odd_everything_cuda_bf16",  # common/gemm (cuBLASLt), linear
    "Cases/RMSNorm.MatchesReference/odd_width_cuda_f32",  # nn/rmsnorm
    "Cases/CrossEntropy.MatchesReference/mqar_mostly_ignored_cuda_bf16",  # nn/cross_entropy
    "Cases/Embedding.MatchesReference/mqar_blank_heavy_cuda_f32",  # nn/embedding
    "Cases/Attention.MatchesReference/mistral_sliding_window_scaled_cuda_f32",  # attention_f32
    "Cases/Attention.MatchesReference/bert_bidirectional_multi_tile_cuda_bf16",  # flash hdim 32
    "Cases/Attention.MatchesReference/chunked_prefill_tq_lt_tk_cuda_f16",  # flash hdim 64
    "Cases/Attention.MatchesReference/phi3_hdim96_gqa_cuda_bf16",  # flash hdim 96
    "Cases/Attention.MatchesReference/llama3_8b_gqa4_causal_cuda_bf16",  # flash hdim 128
    "Cases/Attention.MatchesReference/gemma2_softcap50_window_cuda_bf16",  # flash hdim 256
    DECODE + "speculative_4tok_causal_5_splits_cuda_bf16",
    DECODE + "llama3_gqa_1tok_append_auto_splits_cuda_f32",
    "Cases/CausalConv1d.MatchesReference/width_3_cuda_bf16",  # conv/causal_conv1d
    # conv/causal_conv1d channel-last (and channel-first) on a packed batch with empty sequences
    "Cases/CausalConv1dPacked.MatchesPerSequenceReferenceAndIsBatchInvariant/"
    "empty_and_one_token_cuda_bf16",
    "Cases/LinearScan.MatchesReference/odd_width_one_step_cuda_f32",  # scan/linear_scan
    "Cases/RGLRUGate.MatchesReference/odd_width_cuda_bf16",  # scan/rglru_gate
    "Cases/SelectiveScan.MatchesReference/groups_3_cuda_f32",  # scan/selective_scan fwd + bwd
    "Cases/SelectiveScan.DecodeStepsEqualTheScan/groups_3_cuda_bf16",  # selective_state_update
    "Cases/SSD.MatchesReference/groups_3_of_6_heads_cuda_f32",  # scan/ssd, ssd_bwd (f32)
    "Cases/SSD.MatchesReference/tensor_core_tiles_p80_t130_cuda_bf16",  # ssd on tensor cores
    "Cases/SSD.DecodeStepsEqualTheScan/groups_3_of_6_heads_cuda_f16",  # ssd decode step
    "Cases/GatedDeltaRule.MatchesReference/gva4_raw_qk_scale_cuda_bf16",  # gated_delta_rule (WMMA)
    "Cases/GatedDeltaRule.MatchesReference/kda_one_token_cuda_f32",  # gated_delta_rule, KDA gate
    GDR_DECODE + "from_initial_state_cuda_f16",  # gated_delta_rule_update
    "Cases/GdnGate.MatchesReference/kimi_kda_tiny_cuda_bf16",  # scan/gdn_gate
    "Backends/Sigmoid.MatchesReference/cuda_bf16",  # nn/elementwise sigmoid, sigmoid_gate
    "Cases/MonarchLinear.MatchesReference/k3_l2_odd_cuda_bf16",  # monarch_linear, gemm_batched
]
# racecheck (shared-memory hazards; far slower): one small case per kernel family that uses
# shared memory.
RACECHECK = [
    "Cases/Attention.MatchesReference/tq_gt_tk_noncausal_cuda_bf16",  # flash fwd + bwd, hdim 32
    "Cases/Attention.MatchesReference/window_left0_right1_cuda_f32",  # attention_f32
    DECODE + "speculative_4tok_causal_5_splits_cuda_f16",
    "Cases/SSD.MatchesReference/tensor_core_tiles_p80_t130_cuda_bf16",  # ssd (tensor cores), bwd
    "Cases/SelectiveScan.MatchesReference/one_step_cuda_f32",  # selective_scan
    "Cases/LinearScan.MatchesReference/odd_width_one_step_cuda_f32",  # linear_scan
    "Cases/CausalConv1d.MatchesReference/width_3_cuda_f32",  # causal_conv1d
    "Cases/CausalConv1dChannelLast.StridedRowsMatchReference/width_3_cuda_f32",  # its warp sums
    # rmsnorm's block reductions, the rescaled rows' extra ones included
    "Cases/RMSNorm.ScaledRowsMatchTheUnscaledReference/odd_width_cuda_bf16",
    "Cases/CrossEntropy.MatchesReference/gpt2_tiny_cuda_f32",  # cross_entropy reductions
    "Cases/RGLRUGate.MatchesReference/hawk_tiny_cuda_f32",  # rglru_gate (dlambda sums)
    "Cases/AdamW.MatchesReference/clipped_grads_cuda_f32",  # gradient-norm reduction
    "Cases/Embedding.MatchesReference/gpt2_tiny_cuda_bf16",  # sorted-token backward
    GDR_DECODE + "kda_raw_qk_cuda_f32",  # gated_delta_rule_update
    "Cases/GatedDeltaRule.MatchesReference/kda_gva4_no_state_cuda_f32",  # gated_delta_rule
    "Cases/GdnGate.MatchesReference/qwen3next_gdn_tiny_cuda_f32",  # gdn_gate (parameter sums)
    "Cases/MonarchLinear.MatchesReference/k3_l2_odd_cuda_f32",  # monarch permutation tiles
]

# Device time (README of the device tool): 15 minutes a session, starts included; a start is "a
# minute or more". Two calls on one warm machine: 90 + 360 + 270 s = 12 min; each run's timeout
# adds 30 s at most (13 min), a cold second start 90 s (14.5 min).
MACHINE_START_S = 90
CALL_BUDGET_S = {1: 360, 2: 270}
RUN_MARGIN_S = 30  # run's timeout_s = budget + margin: the script stops itself first
PACK_RESERVE_S = 30  # kept back for packing $OUT (logs ~1 s, build-1.tar.xz ~5-10 s)
# Call 1's shares at the end of its budget: the tests stop starting cases when only the
# sanitizers' shares are left, memcheck when only racecheck's is.
MEMCHECK_SHARE_S, RACECHECK_SHARE_S = 55, 35
TEST_PROCESSES = 8  # test processes at once on the device; 2 OpenMP threads each
SDPA_TIMEOUT_S = 75
# bench_gdn at issue 16's point on the GPU: ~0.3G values drawn and converted on the host (~2 s),
# 11 forward and 11 backward passes of a kernel not yet run on a GPU (timeout: its bound).
GDN_TIMEOUT_S = 45
# fla on a fresh machine: pip install (~3 s), torch's import, then Triton compiling and
# autotuning every kernel of the forward and backward (2 to 12 configurations each, ~80 for one
# gate: tens of seconds, not measured here), then the check and the timing (seconds). Its JSON
# is rewritten after each step, so a run stopped here keeps what it finished.
FLA_TIMEOUT_S = 120
# A run starts only with this much of the call left (fla's cold compile and autotuning would
# otherwise be killed before it measured anything: an estimate, bounded by FLA_TIMEOUT_S).
FLA_MIN_START_S, MIN_START_S = 90, 10
# Creating a CUDA context and loading the module: not measurable here; the usual figure for a
# recent driver with lazy module loading, taken as an assumption (the deadlines bound it).
CUDA_START_S = 0.5


def log(msg):
    print(f"[gpu-suite {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def human(nbytes):
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024


def sh(cmd, timeout=30):
    """Output of a short command, '' when it fails."""
    try:
        return subprocess.run(
            cmd,
            shell=isinstance(cmd, str),
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_logged(cmd, logfile, timeout, env=None, cwd=None):
    """Runs cmd (a list, or a shell string) with its output appended to logfile, killing its
    whole process group at the timeout. Returns (exit code, seconds, timed out); exit code -N
    for a signal."""
    start = time.time()
    with open(logfile, "a") as out:
        out.write(f"$ {cmd if isinstance(cmd, str) else shlex.join(map(str, cmd))}\n")
        out.flush()
        p = subprocess.Popen(
            cmd,
            shell=isinstance(cmd, str),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            rc = p.wait(timeout=max(1, timeout))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
            timed_out = True
            out.write(f"\n[gpu-suite: killed after {timeout:.0f} s]\n")
    return rc, time.time() - start, timed_out


class Deadline:
    def __init__(self, seconds, end=None):
        self.end = end if end is not None else time.time() + seconds

    def before(self, seconds, at_least=0):
        """A deadline `seconds` before this one, but at least `at_least` from now (and never
        after this one)."""
        return Deadline(0, min(self.end, max(self.end - seconds, time.time() + at_least)))

    def left(self):
        return self.end - time.time()


def source_hash():
    """A hash of the files a build reads, the same here and on the device: here the files git
    would send (tracked, and untracked ones it does not ignore), there (no .git) every file,
    since only those were sent."""
    roots = [
        "CMakeLists.txt",
        "cmake",
        "include",
        "src",
        "kernels",
        "tests",
        "cli",
        "models",
        "bench",
    ]
    listed = sh(
        ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard", "--"] + roots
    )
    if listed:
        files = [ROOT / f for f in listed.split("\0") if f]
    else:
        files = [ROOT / r for r in roots if (ROOT / r).is_file()]
        files += [f for r in roots if (ROOT / r).is_dir() for f in (ROOT / r).rglob("*")]
    h = hashlib.sha256()
    for f in sorted(f for f in files if f.is_file() and "results" not in f.parts):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def commit_info():
    """The commit: git here; on the device (no .git), what --prepare or --prebuild recorded,
    when the sources are still the ones it recorded them with."""
    c = sh(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    if c:
        dirty = bool(sh(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]))
        return {"commit": c, "dirty": dirty, "from": "git"}
    if COMMIT_RECORD.exists():
        m = json.loads(COMMIT_RECORD.read_text())
        if m.get("source_hash") == source_hash():
            return {"commit": m["commit"], "dirty": m.get("dirty"), "from": m["written_by"]}
        return {
            "commit": "unknown",
            "from": f"sources differ from {m['commit']} ({m['written_by']})",
        }
    return {"commit": "unknown", "from": "none"}


def record_commit(by):
    """What commit_info() reads on the device."""
    info = commit_info()
    info.update(source_hash=source_hash(), written_by=by)
    info.pop("from", None)
    COMMIT_RECORD.write_text(json.dumps(info, indent=2) + "\n")


def tree_bytes():
    """Bytes of what travels besides the carried folder: the tracked files and the untracked
    ones git does not ignore."""
    files = sh(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    ).split("\0")
    return sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())


def dir_bytes(p):
    if not p.exists():
        return 0
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


# ---- Dependencies: prepared here, unpacked there ------------------------------------------------


def prepare():
    LEASE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log(f"apt-get download {' '.join(PACKAGES)}")
        r = subprocess.run(
            ["apt-get", "download", *PACKAGES], cwd=tmp, capture_output=True, text=True
        )
        if r.returncode:
            sys.exit(f"gpu-suite: apt-get download failed:\n{r.stderr}")
        debs = sorted(tmp.glob("*.deb"))
        stage = tmp / "stage"
        versions = {}
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(stage)], check=True)
            name, version = deb.name.split("_")[:2]
            versions[name] = {
                "version": version.replace("%3a", ":"),
                "deb_bytes": deb.stat().st_size,
            }
        keep = tmp / "keep"
        for pattern in KEEP:
            matches = sorted(stage.glob(pattern))
            if not matches:
                sys.exit(f"gpu-suite: nothing in the packages matches {pattern}")
            for m in matches:
                dest = keep / m.relative_to(stage)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if m.is_symlink() or m.is_file():
                    shutil.copy2(m, dest, follow_symlinks=False)
                else:
                    shutil.copytree(m, dest, symlinks=True)
        for link, target in ALTERNATIVES:
            (keep / link).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, keep / link)
            if not (keep / link).exists():
                sys.exit(f"gpu-suite: {link} -> {target} dangles")
        with tarfile.open(DEPS_ARCHIVE, "w:xz") as t:
            t.add(keep / "usr", arcname="usr")
        unpacked = dir_bytes(keep)
    wheels = download_wheels()
    record_commit("--prepare")
    manifest = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "release": sh("sed -n 's/^PRETTY_NAME=//p' /etc/os-release").strip('"'),
        "packages": versions,
        "archive_bytes": DEPS_ARCHIVE.stat().st_size,
        "unpacked_bytes": unpacked,
        "wheels": wheels,
    }
    DEPS_MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    log(
        f"{DEPS_ARCHIVE.relative_to(ROOT)}: {human(manifest['archive_bytes'])} "
        f"({human(unpacked)} unpacked) from {len(debs)} packages"
    )
    print_travel_sizes()


def download_wheels():
    """pip download of WHEELS into .lease/wheels for the device's Python (3.12, x86-64), as the
    device tool's README says; one version of each (two stop pip there). Returns what each wheel
    is and needs."""
    if WHEELS_DIR.exists():
        shutil.rmtree(WHEELS_DIR)
    WHEELS_DIR.mkdir(parents=True)
    platforms = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    ]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp"]
    cmd += [a for p in platforms for a in ("--platform", p)]
    cmd += ["-d", str(WHEELS_DIR), *WHEELS]
    log(f"pip download {' '.join(WHEELS)}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"gpu-suite: pip download failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    found = {}
    for whl in sorted(WHEELS_DIR.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode().splitlines()

        def field(key):
            return [l.split(":", 1)[1].strip() for l in lines if l.startswith(key + ":")]

        found[whl.name] = {
            "name": field("Name")[0],
            "version": field("Version")[0],
            "bytes": whl.stat().st_size,
            "pure_python": whl.name.endswith("-none-any.whl"),
            "requires": [d for d in field("Requires-Dist") if "extra ==" not in d],
        }
        log(f"  {whl.name}: {human(whl.stat().st_size)}, needs {found[whl.name]['requires']}")
    return found


def print_travel_sizes():
    tree, lease = tree_bytes(), dir_bytes(LEASE)
    limit = 64 << 20
    log(
        f"travels: working tree {human(tree)} + .lease {human(lease)} = {human(tree + lease)} "
        f"of {human(limit)} ({'ok' if tree + lease < limit else 'OVER THE LIMIT'})"
    )
    for f in sorted(LEASE.glob("*")) if LEASE.exists() else []:
        log(f"  .lease/{f.name}: {human(dir_bytes(f))}")


def unpack_deps():
    """Unpacks the carried packages into DEPS_DIR (python's tarfile: no xz binary needed) and
    returns the environment that points CMake and the loader at them."""
    if not DEPS_ARCHIVE.exists():
        raise RuntimeError(
            f"{DEPS_ARCHIVE} is missing: run `bash scripts/gpu-suite.sh --prepare` "
            "here and carry .lease"
        )
    st = DEPS_ARCHIVE.stat()
    stamp, want = DEPS_DIR / ".unpacked-from", f"{st.st_size} {st.st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == want:
        return deps_env()  # a warm machine, or an earlier run here
    if DEPS_DIR.exists():
        shutil.rmtree(DEPS_DIR)
    DEPS_DIR.mkdir(parents=True)
    with tarfile.open(DEPS_ARCHIVE) as t:
        extract(t, DEPS_DIR)
    stamp.write_text(want)
    return deps_env()


def extract(tar, dest):
    """Python's safe extraction where it has one (3.12; the device's python3): nothing outside
    dest, no device files, no absolute links."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)


def deps_env():
    env = dict(os.environ)
    usr = DEPS_DIR / "usr"
    libdir = usr / "lib" / "x86_64-linux-gnu"
    env["CMAKE_PREFIX_PATH"] = str(usr)
    # The image's own (the driver's libraries may be found through it), for Python and torch.
    env["LEASE_IMAGE_LD_LIBRARY_PATH"] = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = ":".join(
        [str(libdir), str(libdir / "openblas-openmp")]
        + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    )
    # Anything run from here (scripts/mqar.sh, run.sh, test.sh) must not reach for apt.
    env["LONGCTX_NO_SETUP"] = "1"
    env["OMP_WAIT_POLICY"] = "passive"
    if Path("/usr/local/cuda/bin").is_dir():
        env["PATH"] = "/usr/local/cuda/bin:" + env.get("PATH", "")
    # The device image's CMake and ninja may be the pip packages beside its python3.
    here = Path(sys.executable).parent
    for tool in ("cmake", "ninja"):
        if not shutil.which(tool, path=env["PATH"]) and (here / tool).exists():
            env["PATH"] += ":" + str(here)
    return env


# ---- --hide-system: the proof that the carried packages suffice --------------------------------


def hidden_paths():
    """Every file of the carried (and HIDDEN_EXTRA) packages installed here, and the links
    elsewhere under /usr that resolve into them (Debian's alternatives)."""
    paths = set()
    for pkg in PACKAGES + HIDDEN_EXTRA:
        for line in sh(["dpkg", "-L", pkg]).splitlines():
            p = re.sub(r"^/(lib|lib64|bin|sbin)/", r"/usr/\1/", line)
            if p.startswith("/usr/") and (os.path.islink(p) or os.path.isfile(p)):
                paths.add(p)
    real = {os.path.realpath(p) for p in paths}
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/include",
        "/usr/include/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu/pkgconfig",
        "/usr/lib/x86_64-linux-gnu/cmake",
    ]:
        for f in os.listdir(d) if os.path.isdir(d) else []:
            full = os.path.join(d, f)
            if os.path.islink(full) and os.path.realpath(full) in real:
                paths.add(full)
    return sorted(paths)


def reexec_hidden(argv):
    """Runs this script again, without --hide-system, in a private mount namespace whose /usr
    is an overlay with a whiteout for every hidden path."""
    paths = hidden_paths()
    tmp = Path(tempfile.mkdtemp(prefix="lease-hide-"))
    upper, work = tmp / "upper", tmp / "work"
    work.mkdir(parents=True)
    for p in paths:
        w = upper / os.path.relpath(p, "/usr")
        w.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(w, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs whiteout
    (tmp / "hidden.txt").write_text("\n".join(paths) + "\n")
    log(
        f"hiding {len(paths)} files of {', '.join(PACKAGES + HIDDEN_EXTRA)} from /usr "
        f"(list: {tmp / 'hidden.txt'})"
    )
    args = [a for a in argv if a != "--hide-system"]
    script = (
        f"mount -t overlay overlay -o lowerdir=/usr,upperdir={upper},workdir={work} /usr "
        f'&& exec "$@"'
    )
    env = dict(os.environ, LEASE_SYSTEM_HIDDEN=str(tmp / "hidden.txt"))
    r = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            sys.executable,
            str(Path(__file__).resolve()),
            *args,
        ],
        env=env,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return r.returncode


def hidden_facts():
    f = os.environ.get("LEASE_SYSTEM_HIDDEN")
    if not f:
        return {"system_packages_hidden": False}
    paths = Path(f).read_text().split()
    still = [p for p in paths if os.path.lexists(p)]
    return {
        "system_packages_hidden": True,
        "hidden_packages": PACKAGES + HIDDEN_EXTRA,
        "hidden_files": len(paths),
        "hidden_files_still_visible": still,
    }


# ---- Build --------------------------------------------------------------------------------------


def cmake_found(build):
    """What CMake found for each dependency (from its cache) and whether it is carried."""
    cache = (
        (build / "CMakeCache.txt").read_text(errors="replace")
        if (build / "CMakeCache.txt").exists()
        else ""
    )
    keys = [
        "GTest_DIR",
        "nlohmann_json_DIR",
        "CLI11_DIR",
        "BLAS_openblas_LIBRARY",
        "BLAS_LIBRARIES",
        "LONGCTX_CBLAS_INCLUDE",
        "OpenMP_gomp_LIBRARY",
        "OpenMP_CXX_FLAGS",
        "CMAKE_CXX_COMPILER",
        "CMAKE_CUDA_COMPILER",
        "CUDAToolkit_BIN_DIR",
        "CUDA_cublasLt_LIBRARY",
        "CMAKE_CUDA_ARCHITECTURES",
        "CMAKE_COMMAND",
    ]
    found = {}
    for k in keys:
        m = re.search(rf"^{re.escape(k)}:[A-Z]+=(.*)$", cache, re.M)
        if m:
            v = m.group(1)
            found[k] = {"value": v, "carried": str(DEPS_DIR) in v}
    return found


def binaries_present(build, call):
    """The outputs of the call's targets (call 2 needs no test binary)."""
    need = [b for b in BINARIES if call == 1 or not b.startswith("tests/")]
    return all(list(build.glob(b)) for b in need)


def build_step(call, dry, logs, deadline, env, summary, use_archive=True):
    """Gets the binaries: a warm machine's build of the same sources, else a carried build
    archive that runs here, else configure and build. Fills summary['build']."""
    build = ROOT / ("build-lease-dry" if dry else "build-lease")
    info = {"dir": str(build.relative_to(ROOT)), "cuda": not dry, "archs": CUDA_ARCHS}
    summary["build"] = info
    want = source_hash()
    info["source_hash"] = want
    stamp = build / "lease-stamp.json"
    targets = TARGETS[call] if not dry else TARGETS[1]
    if stamp.exists():
        s = json.loads(stamp.read_text())
        if (
            s.get("source_hash") == want
            and s.get("cuda") == (not dry)
            and binaries_present(build, 1 if dry else call)
        ):
            info.update(
                status="ok", origin=f"kept from an earlier call ({s.get('origin')})", seconds=0
            )
            return build
    if use_archive and not dry and BUILD_ARCHIVE.exists():
        t0 = time.time()
        ok, why = use_build_archive(BUILD_ARCHIVE, build, want, logs / "smoke.log", env)
        info["archive"] = {"ok": ok, "why": why, "seconds": round(time.time() - t0, 1)}
        if ok:
            info.update(status="ok", origin="carried archive", seconds=round(time.time() - t0, 1))
            stamp.write_text(
                json.dumps({"source_hash": want, "cuda": True, "origin": "carried archive"})
            )
            return build
        log(f"build: carried binaries not usable ({why}); building here")
        shutil.rmtree(build, ignore_errors=True)
    cmake = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-G",
        "Ninja",
        f"-DLONGCTX_CUDA={'OFF' if dry else 'ON'}",
        f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCHS}",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={DEPS_DIR / 'usr'}",
    ]
    log(f"configure: {shlex.join(cmake)}")
    rc, secs, to = run_logged(cmake, logs / "configure.log", min(120, deadline.left()), env)
    info["configure"] = {"exit_code": rc, "seconds": round(secs, 1), "found": cmake_found(build)}
    if rc:
        info.update(status="configure failed")
        return None
    jobs = os.cpu_count() or 2
    cmd = ["cmake", "--build", str(build), "-j", str(jobs), "--target", *targets]
    log(f"build: {' '.join(targets)} with {jobs} jobs")
    rc, secs, to = run_logged(cmd, logs / "build.log", deadline.left(), env)
    info.update(exit_code=rc, seconds=round(secs, 1), jobs=jobs, targets=targets)
    info["status"] = "ok" if rc == 0 else ("timeout" if to else "failed")
    if rc:
        tail = (logs / "build.log").read_text(errors="replace").splitlines()[-30:]
        info["log_tail"] = tail
        return None
    info["origin"] = "built on this machine"
    stamp.write_text(json.dumps({"source_hash": want, "cuda": not dry, "origin": info["origin"]}))
    info["slowest_objects"] = slowest_objects(build / ".ninja_log", 8)
    return build


def slowest_objects(ninja_log, n):
    times = ninja_times(ninja_log)
    return sorted(([k, round(v, 1)] for k, v in times.items()), key=lambda x: -x[1])[:n]


def ninja_times(ninja_log):
    """Seconds per output of the last build recorded in a .ninja_log."""
    times = {}
    if not Path(ninja_log).exists():
        return times
    for line in Path(ninja_log).read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 4:
            times[parts[3]] = (int(parts[1]) - int(parts[0])) / 1000
    return times


def pack_build(build, dest, preset):
    """The binaries and what they need to be found again (the paths baked into them) in one
    archive: tarfile with xz here, so that the device needs no xz binary to read it. The source
    hash is the one taken before the build (its stamp)."""
    built_from = json.loads((build / "lease-stamp.json").read_text())["source_hash"]
    manifest = {
        "root": str(ROOT),
        "build": str(build),
        "source_hash": built_from,
        "archs": CUDA_ARCHS,
        "host": os.uname().nodename,
        "release": sh("sed -n 's/^PRETTY_NAME=//p' /etc/os-release").strip('"'),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with tarfile.open(dest, "w:xz", preset=preset) as t:
        for pattern in BINARIES:
            for f in sorted(build.glob(pattern)):
                t.add(f, arcname=str(f.relative_to(build)))
        data = json.dumps(manifest, indent=2).encode()
        ti = tarfile.TarInfo("lease-build.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return dest.stat().st_size


def use_build_archive(archive, build, want_hash, smoke_log, env):
    """Unpacks a build archive into `build` and checks that it runs here. The test binary has
    the source and build paths of the machine that built it compiled in (the CLI it runs, the
    presets, the Python reference): when they differ, that path is made a link to this tree."""
    try:
        with tarfile.open(archive) as t:
            m = json.load(t.extractfile("lease-build.json"))
            if m["source_hash"] != want_hash:
                return False, f"built from other sources ({m['source_hash']} != {want_hash})"
            build.mkdir(parents=True, exist_ok=True)
            extract(t, build)
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as e:
        return False, f"unreadable archive: {e}"
    old_root = Path(m["root"])
    if old_root.resolve() != ROOT.resolve():
        if old_root.exists() or old_root.is_symlink():
            return False, f"built at {old_root}, which exists here and is another tree"
        try:
            old_root.parent.mkdir(parents=True, exist_ok=True)
            old_root.symlink_to(ROOT)
        except OSError as e:
            return False, f"cannot link {old_root} to this tree: {e}"
    if Path(m["build"]).resolve() != build.resolve():
        return False, f"built in {m['build']}, not {build.relative_to(ROOT)}"
    for cmd in [
        [str(build / "longctx"), "info"],
        [str(build / "tests" / "longctx_tests"), "--gtest_filter=Context.CudaRoundTripWhenPresent"],
    ]:
        rc, _, _ = run_logged(cmd, smoke_log, 60, env)
        if rc:
            return False, f"{Path(cmd[0]).name} exits {rc} (see smoke.log)"
    text = smoke_log.read_text(errors="replace")
    if "cuda devices: none" in text or "[  SKIPPED ]" in text:
        return False, "the binaries see no GPU"
    return True, f"built on {m.get('host')} ({m.get('release')}) at {m['created']}"


# ---- Call 1: correctness ------------------------------------------------------------------------


def list_cases(tests_bin, gfilter, env):
    out = subprocess.run(
        [str(tests_bin), "--gtest_list_tests", f"--gtest_filter={gfilter}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    cases, suite = [], ""
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            suite = line.split()[0]
        else:
            cases.append(suite + line.split()[0])
    return cases


def cpu_siblings(name):
    """The CPU cases that run the same reference as a CUDA case (same case, CPU backend)."""
    m = re.match(r"(.*)(?:_|/)cuda_(f32|bf16|f16)$", name)
    if not m:
        return []
    sep = name[len(m.group(1))]
    return [f"{m.group(1)}{sep}cpu_f32", f"{m.group(1)}{sep}cpu_f64"]


def case_timeout(name, measured):
    """Per-case timeout: 4x the slowest CPU sibling measured here (its f64 reference and CPU op
    dominate; the GPU part is milliseconds) plus 30 s for process and CUDA start, clamped to
    [60, 240] s; 120 s for a case without a measured sibling."""
    sib = [measured[s] for s in cpu_siblings(name) if s in measured]
    if not sib:
        return 120
    return min(240, max(60, 4 * max(sib) + 30))


def classify(rc, timed_out, text):
    if timed_out:
        return "timeout"
    if "[  FAILED  ]" in text:
        return "failed"
    if rc < 0 or rc > 128:
        return "crashed"
    if rc != 0:
        return "failed"
    if "[  SKIPPED ] 1 test" in text:
        return "skipped"
    if "[  PASSED  ] 1 test" in text:
        return "passed"
    return "not found"


def skip_reason(text):
    m = re.search(r"Skipped\n(.*)", text)
    return (m.group(1).strip() if m else "?")[:160]


def failure_message(text, limit=12):
    lines = [
        l
        for l in text.splitlines()
        if l.strip() and not l.startswith("[") and not l.startswith("$ ")
    ]
    return lines[:limit]


def safe(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:180]


def run_cases(cases, make_cmd, outdir, deadline, env, timeouts, processes, classify_fn):
    """Runs one process per case, `processes` at a time, longest predicted first; cases not
    started before the deadline are recorded as 'not run'."""
    outdir.mkdir(parents=True, exist_ok=True)
    results = {}

    def one(name):
        if deadline.left() < 5:
            return name, {"status": "not run", "seconds": 0}
        logf = outdir / (safe(name) + ".log")
        t = min(timeouts[name], max(5, deadline.left()))
        rc, secs, to = run_logged(make_cmd(name, logf), logf, t, env)
        text = logf.read_text(errors="replace")
        r = classify_fn(rc, to, text)
        if to and t < timeouts[name]:
            r["status"] = "stopped (budget)"  # the call's deadline, not the case's timeout
        r["seconds"] = round(secs, 2)
        r["timeout_s"] = round(t)
        if r["status"] not in ("passed", "skipped", "clean"):
            log(f"  {r['status']}: {name} ({secs:.1f} s)")
        return name, r

    order = sorted(cases, key=lambda c: -timeouts[c])
    with concurrent.futures.ThreadPoolExecutor(processes) as pool:
        for name, r in pool.map(one, order):
            results[name] = r
    return {c: results[c] for c in cases}


def test_step(build, dry, logs, deadline, env, measured, summary):
    tests_bin = build / "tests" / "longctx_tests"
    cases = list_cases(tests_bin, CUDA_FILTER, env)
    timeouts = {c: case_timeout(c, measured) for c in cases}
    penv = dict(env, OMP_NUM_THREADS="2")
    log(
        f"tests: {len(cases)} CUDA cases, {TEST_PROCESSES} at a time, per-case timeouts "
        f"{min(timeouts.values(), default=0)}-{max(timeouts.values(), default=0)} s, "
        f"{deadline.left():.0f} s left"
    )

    def classify_test(rc, to, text):
        st = classify(rc, to, text)
        r = {"status": st}
        if st == "skipped":
            r["reason"] = skip_reason(text)
            # On the device a case that finds no GPU is a failure of the machine or the build.
            if not dry and r["reason"].startswith("no usable CUDA device"):
                r["status"] = "skipped: no GPU"
        elif st not in ("passed",):
            r["message"] = failure_message(text)
            r["exit_code"] = rc
            if st == "crashed" and rc < 0:
                r["signal"] = signal.Signals(-rc).name
        return r

    t0 = time.time()
    res = run_cases(
        cases,
        lambda c, logf: [str(tests_bin), f"--gtest_filter={c}"],
        logs / "tests",
        deadline,
        penv,
        timeouts,
        TEST_PROCESSES,
        classify_test,
    )
    counts = {}
    for r in res.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    reasons = {}
    for r in res.values():
        if r["status"] == "skipped":
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    summary["tests"] = {
        "filter": CUDA_FILTER,
        "cases": len(cases),
        "counts": counts,
        "seconds": round(time.time() - t0, 1),
        "processes": TEST_PROCESSES,
        "problems": {c: r for c, r in res.items() if r["status"] not in ("passed", "skipped")},
        "skip_reasons": reasons,
        "slowest": sorted(([c, r["seconds"]] for c, r in res.items()), key=lambda x: -x[1])[:10],
        "all": {c: [r["status"], r["seconds"]] for c, r in res.items()},
    }
    log(f"tests: {counts} in {time.time() - t0:.0f} s")
    # A skip is reported with its reason, not counted as a failure: on a machine without a GPU
    # every case skips, and on the device a case may say its kernel is not in the build.
    return all(r["status"] in ("passed", "skipped") for r in res.values())


def sanitizer_step(tool, names, build, dry, logs, deadline, env, summary):
    exe = (
        os.environ.get("COMPUTE_SANITIZER")
        or shutil.which("compute-sanitizer")
        or (
            "/usr/local/cuda/bin/compute-sanitizer"
            if Path("/usr/local/cuda/bin/compute-sanitizer").exists() and not dry
            else None
        )
    )
    tests_bin = build / "tests" / "longctx_tests"
    listed = set(list_cases(tests_bin, ":".join(names), env))
    missing = [n for n in names if n not in listed]
    if dry and not os.environ.get("COMPUTE_SANITIZER"):
        # Nothing to run without a GPU, but the names must be the suite's: a renamed case would
        # otherwise be found missing only on the device.
        summary[tool] = {
            "status": "skipped",
            "reason": "dry run: no GPU",
            "cases": names,
            "missing_names": missing,
        }
        log(f"{tool}: skipped (dry run); {len(missing)} named cases not in this build")
        return not missing
    if not exe:
        summary[tool] = {"status": "failed", "reason": "compute-sanitizer not found"}
        return False
    present = [n for n in names if n in listed]
    # Sanitized runs are 10-100x slower in the kernels; these cases take a few seconds bare.
    timeouts = {n: max(30, min(150, deadline.left())) for n in present}

    def cmd(name, logf):
        return [
            exe,
            "--tool",
            tool,
            "--error-exitcode",
            "86",
            "--print-limit",
            "20",
            str(tests_bin),
            f"--gtest_filter={name}",
        ]

    def classify_san(rc, to, text):
        errors = sum(int(x) for x in re.findall(r"ERROR SUMMARY: (\d+) error", text))
        hazards = re.findall(
            r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warn", text
        )
        if hazards:
            errors += sum(int(h[1]) for h in hazards)
        r = {"errors": errors}
        if hazards:
            r["warnings"] = sum(int(h[2]) for h in hazards)
        if to:
            r["status"] = "timeout"
        elif (
            re.search(r"Device not supported|not supported on this|CUDA_ERROR_NOT_SUPPORTED", text)
            and "SUMMARY" not in text
        ):
            r["status"] = "unsupported"
            r["message"] = failure_message(text, 6)
        elif errors:
            r["status"] = "errors"
            r["message"] = [l for l in text.splitlines() if l.startswith("=========")][:12]
        elif "ERROR SUMMARY" not in text and "RACECHECK SUMMARY" not in text:
            r["status"] = "no summary"
            r["message"] = failure_message(text, 6)
        else:
            st = classify(0 if rc in (0, 86) else rc, False, text)
            r["status"] = "clean" if st in ("passed", "skipped") else f"test {st}"
            if st == "skipped":
                r["status"] = "test skipped"
        return r

    log(f"{tool}: {len(present)} cases ({len(missing)} named cases not in this build)")
    t0 = time.time()
    res = run_cases(
        present, cmd, logs / tool, deadline, env, timeouts, TEST_PROCESSES, classify_san
    )
    counts = {}
    for r in res.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary[tool] = {
        "cases": res,
        "counts": counts,
        "missing_names": missing,
        "seconds": round(time.time() - t0, 1),
    }
    log(f"{tool}: {counts} in {time.time() - t0:.0f} s")
    return all(r["status"] == "clean" for r in res.values()) and not missing


# ---- Call 2: measurement ------------------------------------------------------------------------


def bench_runs(build, dry):
    """(name, command, timeout s, output JSON) for each measurement, most important first: the
    attention headline (head dim 128 beside SDPA), the gated delta rule beside fla (issue 16),
    decode, the scans, the training step, then what only repeats a comparison at another width
    or gate (fla's KDA, attention at head dim 64), run when the budget has time left."""
    b = build / "bench"
    cli = build / "longctx"
    if dry:
        dev, attn = (
            "cpu",
            "--dtype f32 --tokens 512 --hd 128 --t-min 128 --t-max 256 --reps 1 --no-naive",
        )
        decode = "--dtype f32 --t-min 256 --t-max 1024 --batch 2 --reps 1"
        scan = "--max-t 1024 --plain-max-t 1024 --reps 1"
        scaling = "--lengths 128,256 --tokens 512 --repeats 1"
        gdn_shape = "--batch 1 --T 256 --heads 2 --dk 32 --dv 32"
        gdn = f"--dtype f32 {gdn_shape} --l2norm --reps 1"
        fla = f"--device cpu {gdn_shape} --l2norm --reps 1"
    else:
        dev, attn = "cuda", "--dtype bf16 --full --t-min 1024 --reps 5"
        decode = "--dtype bf16 --t-min 1024 --t-max 131072 --batch 8 --reps 5"
        scan = "--max-t 65536 --reps 5"
        scaling = "--lengths 8192,32768 --repeats 2"
        # Issue 16's point, with the q/k L2 normalisation inside the op as Qwen3-Next and Kimi
        # Linear run it (fla: use_qk_l2norm_in_kernel).
        gdn_shape = "--batch 2 --T 16384 --heads 16 --dk 128 --dv 128"
        gdn = f"--dtype bf16 {gdn_shape} --l2norm --reps 10"
        fla = f"--device cuda {gdn_shape} --l2norm --reps 20"

    def attention(d):
        return [
            (
                f"attention_d{d}",
                f"'{b}/bench_attention' --device {dev} {attn} "
                f"--head-dim {d if not dry else d // 2} --json attention_d{d}.json",
                60,
                f"attention_d{d}.json",
            ),
            (
                f"sdpa_d{d}",
                'LD_LIBRARY_PATH="$LEASE_IMAGE_LD_LIBRARY_PATH" PYTHONUNBUFFERED=1 python3 '
                f"'{ROOT}/bench/sdpa.py' --dtype bf16 --head-dim {d} --t-min 1024 --reps 5 "
                f"--longctx attention_d{d}.json --json sdpa_d{d}.json",
                SDPA_TIMEOUT_S,
                f"sdpa_d{d}.json",
            ),
        ]

    def fla_run(name, gate, longctx_json):
        # The wheels from .lease/wheels into FLA_SITE (a few seconds; again in each run, so that
        # each stands alone), then the peer with the image's libraries; the CLI of its check
        # with the carried ones (this environment's LD_LIBRARY_PATH). Exit 4: unavailable.
        install = (
            f'test -n "$(ls {WHEELS_DIR}/*.whl 2>/dev/null)" || {{ echo "fla: no wheels in '
            f'{WHEELS_DIR}: run --prepare here and carry .lease"; exit 4; }}; '
            'LD_LIBRARY_PATH="$LEASE_IMAGE_LD_LIBRARY_PATH" python3 -m pip install -q --no-index '
            f"--no-deps --no-compile --no-cache-dir --upgrade --target '{FLA_SITE}' "
            f"'{WHEELS_DIR}'/*.whl || exit 3; "
        )
        return (
            name,
            install + f"PYTHONPATH='{FLA_SITE}'${{PYTHONPATH:+:$PYTHONPATH}} "
            'LD_LIBRARY_PATH="$LEASE_IMAGE_LD_LIBRARY_PATH" PYTHONUNBUFFERED=1 python3 '
            f"'{ROOT}/bench/fla_gdn.py' {fla} --gates {gate} --cli '{cli}' "
            f'--cli-ld-library-path "$LD_LIBRARY_PATH" --longctx {longctx_json} '
            f"--json {name}.json",
            FLA_TIMEOUT_S,
            f"{name}.json",
        )

    def gdn_run(gate):
        return (
            f"gdn_{gate}",
            f"'{b}/bench_gdn' --device {dev} {gdn}{' --kda' if gate == 'channel' else ''} "
            f"--no-plain --no-crossover --json gdn_{gate}.json",
            GDN_TIMEOUT_S,
            f"gdn_{gate}.json",
        )

    runs = attention(128)
    runs.append(gdn_run("head"))
    runs.append(fla_run("fla_gdn", "head", "gdn_head.json"))
    runs.append(
        (
            "decode_d128",
            f"'{b}/bench_attention' --device {dev} --decode {decode} "
            f"--head-dim {128 if not dry else 64} --json decode_d128.json",
            45,
            "decode_d128.json",
        )
    )
    runs.append(
        ("scan", f"'{b}/bench_scan' --device {dev} {scan} --json scan.json", 75, "scan.json")
    )
    # One run per preset, so that a slow or failing preset leaves the others their time.
    for preset in ("llama", "hybrid", "mamba2"):
        runs.append(
            (
                f"scaling_{preset}",
                f"'{cli}' bench scaling --device {dev} --presets {preset}"
                f" --presets-dir '{ROOT}/models/presets' {scaling} --out scaling_{preset}.json",
                45,
                f"scaling_{preset}.json",
            )
        )
    runs.append(gdn_run("channel"))
    runs.append(fla_run("fla_kda", "channel", "gdn_channel.json"))
    runs += attention(64)
    return runs


def measure_step(build, dry, logs, deadline, env, summary):
    work = logs / "bench"
    work.mkdir(parents=True, exist_ok=True)
    summary["runs"] = []
    results = {}
    ok = True
    for name, cmd, timeout, out in bench_runs(build, dry):
        left = deadline.left()
        if left < (FLA_MIN_START_S if name.startswith("fla") else MIN_START_S):
            summary["runs"].append({"name": name, "status": "not run (budget)"})
            continue
        log(f"{name}: {cmd}")
        rc, secs, to = run_logged(cmd, logs / f"{name}.log", min(timeout, left), env, cwd=work)
        r = {
            "name": name,
            "command": cmd,
            "exit_code": rc,
            "seconds": round(secs, 1),
            "status": "ok" if rc == 0 else ("timeout" if to else "failed"),
        }
        if name.startswith(("sdpa", "fla")) and rc == 4:  # the peer not there (it says why)
            r["status"] = "unavailable"
            r["reason"] = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-1]
        if (work / out).exists():
            try:
                results[name] = json.loads((work / out).read_text())
            except json.JSONDecodeError as e:
                r["json_error"] = str(e)
        if r["status"] in ("failed", "timeout"):
            ok = False
            r["log_tail"] = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-8:]
        summary["runs"].append(r)
        log(f"{name}: {r['status']} in {secs:.0f} s")
    summary["results"] = results
    return ok


# ---- Tables -------------------------------------------------------------------------------------


def table_1(s):
    lines = [
        f"# Lease call 1 (correctness): {s['machine'].get('gpu', '?')}, commit "
        f"{s['commit']['commit'][:12]}, {s['date']}",
        "",
    ]
    b = s.get("build", {})
    lines.append(
        f"Build: {b.get('status')} ({b.get('origin', 'on this machine')}, "
        f"{b.get('seconds', '?')} s)."
    )
    if b.get("log_tail"):
        lines += ["", "```", *b["log_tail"][-12:], "```"]
    if s.get("error"):
        lines += ["", "Error in the suite:", "```", *s["error"], "```"]
    t = s.get("tests")
    if t:
        lines.append(
            f"CUDA test cases: {t['cases']}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(t["counts"].items()))
            + f" in {t['seconds']} s."
        )
        if t["problems"]:
            lines += ["", "| case | status | s | what it said |", "|---|---|---|---|"]
            for c, r in sorted(t["problems"].items()):
                msg = " / ".join((r.get("message") or [r.get("reason", "")])[:3])
                if r.get("signal"):
                    msg = f"{r['signal']}: {msg}"
                msg = msg.replace("|", "\\|")[:200]
                lines.append(f"| `{c}` | {r['status']} | {r['seconds']} | {msg} |")
        if t["skip_reasons"]:
            lines += ["", "Skips: " + "; ".join(f"{n}x {k}" for k, n in t["skip_reasons"].items())]
    for tool in ("memcheck", "racecheck"):
        m = s.get(tool)
        if not m:
            continue
        if "cases" not in m or isinstance(m["cases"], list):
            lines += ["", f"{tool}: {m.get('status')} ({m.get('reason', '')})."]
            if m.get("missing_names"):
                lines.append("Named cases not in this build: " + ", ".join(m["missing_names"]))
            continue
        lines += [
            "",
            f"{tool}: "
            + ", ".join(f"{v} {k}" for k, v in m["counts"].items())
            + f" in {m['seconds']} s",
            "",
            "| case | status | errors | s |",
            "|---|---|---|---|",
        ]
        for c, r in m["cases"].items():
            lines.append(f"| `{c}` | {r['status']} | {r.get('errors', '')} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def fmt(v, spec=".1f"):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table_gdn(r):
    """The gated delta rule: bench_gdn (gdn_<gate>) beside fla (fla_gdn: head, fla_kda:
    channel), medians, and fla_gdn.py's check of both against a float64 recurrence."""
    lines = []
    for gate, fla_name in (("head", "fla_gdn"), ("channel", "fla_kda")):
        ours = r.get(f"gdn_{gate}", {}).get("target")
        fla = r.get(fla_name, {})
        theirs = fla.get("points", {}).get(gate, {})
        if not ours and not theirs:
            continue
        if not lines:
            t = ours or {}
            cfg = fla.get("config", {})
            l2norm = t.get("use_qk_l2norm", cfg.get("l2norm"))
            lines += [
                "## Gated delta rule beside fla "
                f"{fla.get('fla') or '(not run)'} ({r.get(f'gdn_{gate}', {}).get('dtype', 'bf16')}"
                f", B = {t.get('B', cfg.get('batch'))}, T = {t.get('T', cfg.get('T'))}, H = "
                f"{t.get('H', cfg.get('H'))}, K = {t.get('K', cfg.get('K'))}, V = "
                f"{t.get('V', cfg.get('V'))}, l2norm {'in' if l2norm else 'not in'} the op; "
                "ms, medians)",
                "",
                "| gate | fwd longctx | fwd fla | bwd longctx | fwd+bwd longctx | fwd+bwd fla | "
                "longctx / fla | check: longctx vs float64, 2x fla's error |",
                "|---|---|---|---|---|---|---|---|",
            ]
        of, ob = (ours or {}).get("fwd", {}), (ours or {}).get("bwd", {})
        o_fwd, o_bwd = of.get("wall_median_ms"), ob.get("wall_median_ms")
        o_sum = o_fwd + o_bwd if o_fwd is not None and o_bwd is not None else None
        t_fwd = theirs.get("fwd", {}).get("median_ms")
        t_sum = theirs.get("fwd_bwd", {}).get("median_ms")
        ratio = o_sum / t_sum if o_sum and t_sum else None
        c = fla.get("checks", {}).get(gate)
        if c is None:
            check = "-"
        elif "tensors" in c:
            bad = [n for n, e in c["tensors"].items() if not e.get("ok")]
            check = "ok" if c["ok"] else "FAILED: " + ", ".join(bad)
        else:
            check = f"FAILED: {c.get('error', '')[:100]}"
        note = theirs.get("error") or theirs.get("skipped") or ""
        lines.append(
            f"| {gate} | {fmt(o_fwd, '.2f')} | {fmt(t_fwd, '.2f')} | {fmt(o_bwd, '.2f')} | "
            f"{fmt(o_sum, '.2f')} | {fmt(t_sum, '.2f')}{' ' + note[:80] if note else ''} | "
            f"{fmt(ratio, '.2f')} | {check.replace('|', '/')} |"
        )
    return lines + [""] if lines else []


def table_2(s):
    r = s.get("results", {})
    lines = [
        f"# Lease call 2 (measurement): {s['machine'].get('gpu', '?')}, commit "
        f"{s['commit']['commit'][:12]}, {s['date']}",
        "",
    ]
    b = s.get("build", {})
    lines.append(
        f"Build: {b.get('status')} ({b.get('origin', 'on this machine')}, "
        f"{b.get('seconds', '?')} s)."
    )
    if b.get("log_tail"):
        lines += ["", "```", *b["log_tail"][-12:], "```"]
    if s.get("error"):
        lines += ["", "Error in the suite:", "```", *s["error"], "```"]
    lines.append("")
    for d in (128, 64):
        ours = {(p["T"], p["causal"]): p for p in r.get(f"attention_d{d}", {}).get("points", [])}
        sdpa = {}
        for p in r.get(f"sdpa_d{d}", {}).get("points", []):
            sdpa[(p["T"], p["causal"], p["backend"])] = p
        if not ours and not sdpa:
            continue
        cfg = r.get(f"attention_d{d}", {}).get("config") or r.get(f"sdpa_d{d}", {}).get(
            "config", {}
        )
        lines += [
            f"## Attention, {cfg.get('dtype')}, head dim {cfg.get('D')} (TFLOP/s; batch x T ="
            f" {cfg.get('tokens')}, H = {cfg.get('H')})",
            "",
            "| T | causal | fwd longctx | flash | cuDNN | efficient | bwd longctx | flash | "
            "cuDNN | efficient |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key in sorted(set(ours) | {(k[0], k[1]) for k in sdpa}):
            row = [str(key[0]), "yes" if key[1] else "no"]
            for what in ("fwd_tflops", "bwd_tflops"):
                row.append(
                    fmt(ours.get(key, {}).get(what))
                    + ("" if ours.get(key, {}).get("check_ok", True) else " (check FAILED)")
                )
                for be in ("flash", "cudnn", "efficient"):
                    row.append(fmt(sdpa.get((*key, be), {}).get(what)))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += table_gdn(r)
    dec = r.get("decode_d128")
    if dec:
        p0 = dec["points"][0] if dec["points"] else {}
        lines += [
            f"## Decode ({dec['config']['dtype']}, one token, B = {p0.get('B')}, H = "
            f"{p0.get('H')}, Hkv = {p0.get('Hkv')}, head dim {p0.get('D')}) against the copy floor "
            f"({fmt(dec.get('copy_gb_per_s'))} GB/s measured)",
            "",
            "| T | step us | GB/s | % of floor | check |",
            "|---|---|---|---|---|",
        ]
        for p in dec["points"]:
            lines.append(
                f"| {p['T']} | {fmt(p['step_s'] * 1e6)} | {fmt(p['gb_per_s'])} | "
                f"{fmt(100 * p['fraction_of_copy_floor'])} | "
                f"{'ok' if p['check_ok'] else 'FAILED'} |"
            )
        lines.append("")
    scan = r.get("scan")
    if scan:
        lines += [
            f"## Scans (f32 forward) against the copy floor "
            f"({fmt(scan.get('copy_gb_per_s'))} GB/s measured)",
            "",
            "| op | config | T | ms | GB/s | % of floor |",
            "|---|---|---|---|---|---|",
        ]
        for p in scan["results"]:
            lines.append(
                f"| {p['op']} | {p['config']} | {p['T']} | {fmt(p['ms'], '.3f')} | "
                f"{fmt(p['gb_per_s'])} | {fmt(100 * p['fraction_of_copy_floor'])} |"
            )
        lines.append("")
    scs = [r[k] for k in r if k.startswith("scaling_")]
    if scs:
        lines += [
            f"## One training step (forward + backward, f32; {scs[0]['tokens_per_batch']} "
            "tokens per batch)",
            "",
            "| preset | T | batch | step ms | train tok/s | TFLOP/s | "
            "prefill tok/s | decode tok/s | device peak |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in [p for sc in scs for p in sc["presets"]]:
            for q in p.get("points", []):
                if "error" in q:
                    lines.append(
                        f"| {p['preset']} | {q['T']} | {q['batch']} | {q['error'][:80]} "
                        "| | | | | |"
                    )
                    continue
                lines.append(
                    f"| {p['preset']} | {q['T']} | {q['batch']} | "
                    f"{fmt(q['train_step_s'] * 1e3)} | {fmt(q['train_tokens_per_s'], '.0f')} | "
                    f"{fmt(q['train_tflops_estimate'], '.3f')} | "
                    f"{fmt(q['prefill_tokens_per_s'], '.0f')} | "
                    f"{fmt(q['decode_tokens_per_s'], '.0f')} | "
                    f"{human(q['train_peak_bytes'])} |"
                )
        lines.append("")
    lines += ["## Runs", "", "| run | status | s |", "|---|---|---|"]
    for run in s.get("runs", []):
        lines.append(f"| {run['name']} | {run['status']} | {run.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


# ---- A call -------------------------------------------------------------------------------------


def machine_facts(dry):
    f = {
        "host_cpus": os.cpu_count(),
        "os": sh("sed -n 's/^PRETTY_NAME=//p' /etc/os-release").strip('"'),
        "cxx": sh("c++ --version | head -1"),
        "cmake": sh("cmake --version | head -1"),
        "nvcc": sh("nvcc --version | tail -2 | head -1")
        or sh("/usr/local/cuda/bin/nvcc --version | tail -2 | head -1"),
        "python3": sh("python3 --version"),
        "glibc": sh("ldd --version | head -1"),
    }
    if not dry:
        f["gpu"] = sh(
            "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,"
            "clocks.mem --format=csv,noheader"
        )
        f["sanitizer"] = sh("compute-sanitizer --version | tail -1") or sh(
            "/usr/local/cuda/bin/compute-sanitizer --version | tail -1"
        )
    else:
        f["gpu"] = "none (dry run)"
    return f


def numpy_for_system_python(env):
    """tests/test_cli.cpp runs its numpy reference with /usr/bin/python3; on the device numpy
    lives in the image's PyTorch environment, for the same Python version. Points the system
    interpreter at that site-packages when it lacks numpy (recorded in the summary)."""
    system = "/usr/bin/python3"
    if not os.path.exists(system):
        return None
    if subprocess.run([system, "-c", "import numpy"], capture_output=True).returncode == 0:
        return None
    version = "import sys; print(sys.version_info[:2])"
    site = sh(
        [
            "python3",
            "-c",
            "import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))",
        ]
    )
    if site and sh(["python3", "-c", version]) == sh([system, "-c", version]):
        env["PYTHONPATH"] = site + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return site
    return None


def pack_logs(logs, dest):
    with tarfile.open(dest, "w:gz", compresslevel=6) as t:
        t.add(logs, arcname=dest.name.split(".")[0])
    return dest.stat().st_size


def call(n, dry, out):
    budget = CALL_BUDGET_S[n]
    deadline = Deadline(budget - PACK_RESERVE_S)  # the work's; packing has the rest
    out.mkdir(parents=True, exist_ok=True)
    logs = WORK / f"call-{n}{'-dry' if dry else ''}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    start = time.time()
    summary = {
        "call": n,
        "dry_run": dry,
        "budget_s": budget,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_info(),
        "source_hash": source_hash(),
        "machine": machine_facts(dry),
        **hidden_facts(),
    }
    ok = True
    try:
        t0 = time.time()
        env = unpack_deps()
        summary["deps"] = {
            "status": "ok",
            "seconds": round(time.time() - t0, 1),
            "dir": str(DEPS_DIR),
        }
        if DEPS_MANIFEST.exists():
            summary["deps"]["packages"] = {
                k: v["version"]
                for k, v in json.loads(DEPS_MANIFEST.read_text())["packages"].items()
            }
        site = numpy_for_system_python(env)
        if site:
            summary["pythonpath_for_usr_bin_python3"] = site
        measured = (
            json.loads(MEASUREMENTS.read_text()).get("case_seconds", {})
            if MEASUREMENTS.exists()
            else {}
        )
        # A dry run's CPU build on this 2-core machine takes longer than the device's: the
        # call's budget starts after it, so that the steps after it meet the same deadlines.
        build = build_step(n, dry, logs, Deadline(3600) if dry else deadline, env, summary)
        if dry:
            deadline = Deadline(budget - PACK_RESERVE_S)
        if build is None:
            ok = False
        elif n == 1:
            shares = MEMCHECK_SHARE_S + RACECHECK_SHARE_S
            ok &= test_step(
                build, dry, logs, deadline.before(shares, at_least=60), env, measured, summary
            )
            ok &= sanitizer_step(
                "memcheck",
                MEMCHECK,
                build,
                dry,
                logs,
                deadline.before(RACECHECK_SHARE_S),
                env,
                summary,
            )
            ok &= sanitizer_step("racecheck", RACECHECK, build, dry, logs, deadline, env, summary)
            # For a call 2 that finds a fresh machine; binaries that came carried are there.
            if not dry and summary["build"].get("origin") == "built on this machine":
                # xz preset 1: the sm_90a binaries (29.7 MB) pack to 6.0 MB in 1.5 s of CPU
                # here (preset 6, --prebuild's: 5.0 MB; the 90a;80 library alone took 18 s at
                # preset 6, 2.7 s at 1, 1.7 s with gzip at 11.7 MB).
                size = pack_build(build, out / "build-1.tar.xz", preset=1)
                summary["build_archive"] = {"file": "build-1.tar.xz", "bytes": size}
                if size > 16 << 20:
                    (out / "build-1.tar.xz").unlink()
                    summary["build_archive"]["dropped"] = "over the 16 MiB a file may have"
        else:
            ok &= measure_step(build, dry, logs, deadline, env, summary)
    except Exception as e:  # the files still go back, with what went wrong in them
        summary["error"] = traceback.format_exc().splitlines()[-6:]
        ok = False
        log(f"ERROR: {e}")
    summary["seconds"] = round(time.time() - start, 1)
    summary["ok"] = bool(ok)
    if n == 1:
        (out / "summary-1.json").write_text(json.dumps(summary, indent=1) + "\n")
        (out / "table-1.md").write_text(table_1(summary))
    else:
        (out / "results-2.json").write_text(json.dumps(summary, indent=1) + "\n")
        (out / "table-2.md").write_text(table_2(summary))
    pack_logs(logs, out / f"logs-{n}.tar.gz")
    print()
    print((out / f"table-{n}.md").read_text())
    log(f"call {n}: {'ok' if ok else 'PROBLEMS'} in {summary['seconds']} s; files in {out}:")
    for f in sorted(out.iterdir()):
        log(f"  {f.name}: {human(f.stat().st_size)}")
    return 0 if ok else 1


# ---- --configure-only: the CUDA configure with only the carried packages ------------------------


def configure_only(out):
    """Configures a CUDA build (sm_90a) against the carried packages and records what CMake
    found: the configure half of the proof (the CUDA build itself takes tens of minutes here)."""
    env = unpack_deps()
    build = WORK / "configure-cuda"
    shutil.rmtree(build, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    cmake = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-G",
        "Ninja",
        "-DLONGCTX_CUDA=ON",
        f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCHS}",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={DEPS_DIR / 'usr'}",
    ]
    rc, secs, _ = run_logged(cmake, out / "configure-cuda.log", 300, env)
    result = {
        "exit_code": rc,
        "seconds": round(secs, 1),
        "found": cmake_found(build),
        **hidden_facts(),
    }
    (out / "configure-cuda.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return rc


# ---- --measure and --plan -----------------------------------------------------------------------


def measure(ninja_log, tests_bin):
    """Compile times per object from a .ninja_log, and the CPU siblings' run times of every
    CUDA case (one process each, as the device runs them) from `tests_bin`."""
    m = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    if ninja_log:
        times = ninja_times(ninja_log)
        cache = Path(ninja_log).parent / "CMakeCache.txt"
        archs = (
            re.search(r"^CMAKE_CUDA_ARCHITECTURES:\w+=(.*)$", cache.read_text(), re.M)
            if cache.exists()
            else None
        )
        m["compile"] = {
            "from": str(ninja_log),
            "archs": archs.group(1) if archs else "?",
            "host_cpus": os.cpu_count(),
            "load_average_now": os.getloadavg()[0],
            "seconds": {k: round(v, 1) for k, v in sorted(times.items())},
        }
    if tests_bin:
        env = dict(os.environ, OMP_WAIT_POLICY="passive")
        cuda = list_cases(tests_bin, CUDA_FILTER, env)
        sibs = sorted({s for c in cuda for s in cpu_siblings(c)})
        listed = set(list_cases(tests_bin, ":".join(sibs), env))
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "r.json"
            subprocess.run(
                [
                    str(tests_bin),
                    "--gtest_filter=" + ":".join(s for s in sibs if s in listed),
                    f"--gtest_output=json:{report}",
                ],
                env=env,
                capture_output=True,
            )
            r = json.loads(report.read_text())
        secs = {}
        for suite in r["testsuites"]:
            for t in suite["testsuite"]:
                name = f"{suite['name']}.{t['name']}"
                secs[name] = float(t["time"].rstrip("s"))
        m["case_seconds"] = dict(sorted(secs.items()))
        m["cuda_cases"] = cuda
        # One process per case: its start (loading the library, gtest's registry) measured on
        # a case that skips here.
        t0 = time.time()
        for _ in range(10):
            subprocess.run(
                [str(tests_bin), f"--gtest_filter={cuda[0]}"], env=env, capture_output=True
            )
        m["process_start_s"] = round((time.time() - t0) / 10, 3)
        m["cases_from"] = {
            "binary": str(tests_bin),
            "host_cpus": os.cpu_count(),
            "load_average_now": os.getloadavg()[0],
            "date": datetime.date.today().isoformat(),
        }
    if DEPS_ARCHIVE.exists():
        # Unpacking the carried packages and configuring the CUDA build, as call 1 does.
        stamp = DEPS_DIR / ".unpacked-from"
        if stamp.exists():
            stamp.unlink()
        t0 = time.time()
        env = unpack_deps()
        m["deps_unpack_s"] = round(time.time() - t0, 2)
        build = WORK / "measure-configure"
        shutil.rmtree(build, ignore_errors=True)
        WORK.mkdir(exist_ok=True)
        t0 = time.time()
        subprocess.run(
            [
                "cmake",
                "-S",
                str(ROOT),
                "-B",
                str(build),
                "-G",
                "Ninja",
                "-DLONGCTX_CUDA=ON",
                f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCHS}",
                "-DCMAKE_BUILD_TYPE=Release",
            ],
            env=env,
            capture_output=True,
            check=True,
        )
        m["configure_cuda_s"] = round(time.time() - t0, 2)
        shutil.rmtree(build, ignore_errors=True)
    MEASUREMENTS.write_text(json.dumps(m, indent=1) + "\n")
    log(f"wrote {MEASUREMENTS.relative_to(ROOT)}")


def attention_sweep_work(d, reps=5):
    """FLOPs of one bench_attention --full sweep from T = 1024 (check, warm-up and reps
    executions of forward and backward at each point) and the values its check draws."""
    tokens, hd, flops, values = 16384, 2048, 0.0, 0
    T = 1024
    while T <= tokens:
        B = tokens // T
        for causal in (False, True):
            fwd = 4.0 * B * T * T * hd * (0.5 if causal else 1.0)
            flops += (2 + reps) * 3.5 * fwd
            values += 4 * B * T * hd
        T *= 2
    return flops, values


def plan():
    m = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    print(
        "GPU lease plan (the device: one H100 or H200, sm_90a, 16 cores, no network; 15 min of "
        "device time in all, machine starts included)\n"
    )
    print("Here, before the lease (no device time), on the commit to be run:")
    print(
        "  bash scripts/gpu-suite.sh --prepare     # .lease/deps.tar.xz: the packages the image"
        " lacks;"
    )
    print(
        f"                                          #   .lease/wheels: {', '.join(WHEELS)} (pip"
        " download)"
    )
    print(
        "  bash scripts/gpu-suite.sh --prebuild    # .lease/build.tar.xz: sm_90a binaries"
        " (recommended:"
    )
    print(
        "                                          #   call 1 builds there when they do not"
        " run, out of"
    )
    print(
        "                                          #   its 360 s: the build estimate below is"
        " what the"
    )
    print("                                          #   cases and sanitizers then lose)")
    print(
        "  bash scripts/gpu-suite.sh --call 1 --dry-run --hide-system   # the same logic on the"
        " CPU,"
    )
    print(
        "                                          #   with this machine's copies of the"
        " packages hidden"
    )
    print_travel_sizes()
    print()

    # ---- the build, from the per-object compile times of a 90a build here
    comp = m.get("compile", {})
    secs = comp.get("seconds", {})
    cu = {k: v for k, v in secs.items() if k.endswith(".cu.o")}
    cxx = {k: v for k, v in secs.items() if k.endswith(".o") and not k.endswith(".cu.o")}
    links = {k: v for k, v in secs.items() if not k.endswith(".o")}
    n_arch = len(comp.get("archs", CUDA_ARCHS).split(";"))
    # Device code is compiled once per architecture, the host side once: a file built for
    # n_arch architectures here takes between 1/n_arch and (1 + 1/n_arch)/2 of that for one;
    # the conservative end. Cores: 16 there, each taken as fast as one here.
    scale = (1 + 1 / n_arch) / 2 if n_arch > 1 else 1.0
    cores = 16
    total = (sum(cu.values()) * scale + sum(cxx.values())) / cores
    longest = max(cu.values(), default=0) * scale
    build_est = max(longest, total) + sum(links.values())
    if secs:
        top = sorted(cu.items(), key=lambda kv: -kv[1])[:3]
        print(
            f"Build, from the {len(secs)} steps of {comp.get('from')} (sm_{comp.get('archs')}, "
            f"{comp.get('host_cpus')} cores, load average {comp.get('load_average_now', 0):.1f}"
            " when read): CUDA objects "
            + f"{sum(cu.values()):.0f} s in all, the longest "
            + ", ".join(f"{Path(k).name} {v:.0f} s" for k, v in top)
            + f"; C++ objects {sum(cxx.values()):.0f} s; links {sum(links.values()):.0f} s."
        )
        print(
            f"  There, {cores} cores as fast as one here"
            + (f", x{scale:.2f} for one architecture of {n_arch}" if n_arch > 1 else "")
            + f": max(longest object {longest:.0f} s, all objects / {cores} = {total:.0f} s)"
            f" + links = ~{build_est:.0f} s ("
            + (
                "an upper estimate: the times here are on a loaded machine)."
                if comp.get("load_average_now", 0) > 2 * comp.get("host_cpus", 1)
                else "this machine's per-core speed taken for the device's)."
            )
        )
    # ---- the tests, from the CPU siblings' times
    cases, cuda = m.get("case_seconds", {}), m.get("cuda_cases", [])
    test_est = 0
    if cases and cuda:
        per_case = [
            max([cases[x] for x in cpu_siblings(c) if x in cases], default=None) for c in cuda
        ]
        known = [x for x in per_case if x is not None]
        start = m.get("process_start_s", 0) + CUDA_START_S
        # A case without a sibling (model, training, CLI tests) is taken at the slowest
        # sibling's time.
        work = sum(known) + (len(per_case) - len(known)) * max(known, default=1)
        test_est = (work + len(cuda) * start) / TEST_PROCESSES
        print(
            f"Tests, from the CPU siblings of the CUDA cases (same case on the CPU: its f64 "
            f"reference and op) run here ({m['cases_from']['date']}, load "
            f"{m['cases_from']['load_average_now']:.1f}): {len(cuda)} CUDA cases, {len(known)}"
            f" with a sibling (slowest {max(known):.1f} s, the rest taken at that); (siblings "
            f"{work:.0f} s + {len(cuda)} x {start:.2f} s a process: "
            f"{m.get('process_start_s', 0):.2f} s"
            f" measured + {CUDA_START_S} s assumed for the CUDA context) / {TEST_PROCESSES} "
            f"processes = ~{test_est:.0f} s."
        )
    deps_s, conf_s = m.get("deps_unpack_s", 1), m.get("configure_cuda_s", 5)
    print()

    # ---- call 1
    b1 = CALL_BUDGET_S[1]
    print(
        f"Call 1, correctness: budget {b1} s of work and packing (the script keeps its own "
        "deadlines)"
    )
    print(
        f'  run(command="bash scripts/gpu-suite.sh --call 1", carry=[".lease"], '
        f"timeout_s={b1 + RUN_MARGIN_S})"
    )
    work_end = b1 - PACK_RESERVE_S
    rows = [
        (f"unpack .lease/deps.tar.xz into {DEPS_DIR}", f"{deps_s:.0f} s", "measured here"),
        (
            "binaries: .lease/build.tar.xz if carried, built from these sources, and it runs "
            "(`longctx info` sees the GPU, one CUDA case passes)",
            "~5 s",
            "60 s a smoke run",
        ),
        (
            f"  else configure ({conf_s:.0f} s here) and build {' '.join(TARGETS[1])} for "
            f"sm_{CUDA_ARCHS}, {cores} jobs",
            f"~{conf_s + build_est:.0f} s",
            "the call's deadline",
        ),
        (
            f"every CUDA case ({len(cuda) or '?'} now, by pattern), one process each, "
            f"{TEST_PROCESSES} at a time; timeout 4x its CPU sibling's time + 30 s in [60, 240] s, "
            "120 s without one",
            f"~{test_est:.0f} s",
            f"stops starting cases {MEMCHECK_SHARE_S + RACECHECK_SHARE_S} s before {work_end} s",
        ),
        (
            f"compute-sanitizer memcheck, {len(MEMCHECK)} named cases (every kernel)",
            "",
            f"{MEMCHECK_SHARE_S} s share",
        ),
        (
            f"compute-sanitizer racecheck, {len(RACECHECK)} named cases (one per kernel family "
            "with shared memory)",
            "",
            f"{RACECHECK_SHARE_S} s share, ends at {work_end} s",
        ),
        (
            "pack: summary-1.json, table-1.md, logs-1.tar.gz; build-1.tar.xz when built there "
            "(xz -1: the sm_90a binaries, 29.7 MB, packed to 6.0 MB in 1.5 s of CPU here)",
            "~3 s",
            f"{PACK_RESERVE_S} s kept",
        ),
    ]
    for what, est, bound in rows:
        print(f"  - {what} [{est + '; ' if est else ''}{bound}]")
    print("  back: summary-1.json, table-1.md, logs-1.tar.gz, build-1.tar.xz (at most 4 files)")
    print()

    # ---- call 2
    b2 = CALL_BUDGET_S[2]
    print(
        f"Call 2, measurement: budget {b2} s; each run has its timeout and runs only if "
        f"{MIN_START_S} s (fla: {FLA_MIN_START_S} s) are left"
    )
    print(
        f"  (first, if call 1 built there: cp <files_at>/build-1.tar.xz .lease/build.tar.xz, for a"
        " machine that went cold)"
    )
    print(
        f'  run(command="bash scripts/gpu-suite.sh --call 2", carry=[".lease"], '
        f"timeout_s={b2 + RUN_MARGIN_S})"
    )
    print(
        "  - binaries: kept from call 1 on a warm machine, else .lease/build.tar.xz, else a "
        "build of " + " ".join(TARGETS[2])
    )
    flops, values = attention_sweep_work(128)
    notes = {
        "attention": f"{flops / 1e12:.0f} TFLOP in all (check + warm-up + 5 reps, fwd + bwd): "
        f"{flops / 50e12:.0f} s at a pessimistic 50 TFLOP/s; the check draws "
        f"{values / 1e9:.2f}G values on the host (4 ns each here) and converts them",
        "sdpa": "the same sweep through torch (flash, cuDNN, efficient), plus torch's start",
        "decode": "8 points to T = 128k: 2 GiB of KV cache at the last; microseconds a step",
        "scan": "5 ops x 4 lengths to 64k, f32; ~1.5G input values drawn on the host",
        "scaling": "forward + backward (+ prefill, 16 decode steps), f32, 131072 tokens a batch",
        "gdn": "issue 16's point: forward and backward, median of 10 (+ a warm-up); ~0.3G values"
        " drawn on the host",
        "fla": f"pip install of .lease/wheels ({', '.join(WHEELS)}) into {FLA_SITE}, then"
        " bench/fla_gdn.py: Triton compiles and autotunes the gate's kernels at the timed shape"
        " (cold machine: tens of seconds, not measured), forward and forward + backward, medians"
        " of 20, then the check (longctx's CLI and fla against a float64 recurrence, T = 200)",
    }
    for name, cmd, t, _ in bench_runs(ROOT / "build-lease", False):
        key = name.split("_")[0]
        print(f"  - {name} (timeout {t} s): {cmd.replace(str(ROOT) + '/', '')}")
        print(f"      {notes.get(key, '')}")
    runs = bench_runs(ROOT / "build-lease", False)
    print(
        f"  The runs' timeouts add up to {sum(r[2] for r in runs)} s against {b2 - PACK_RESERVE_S}"
        " s of work: they run in this order (by importance), and the budget cuts the last ones,"
        " recorded 'not run (budget)'."
    )
    print("  back: results-2.json, table-2.md, logs-2.tar.gz")
    print()
    warm = MACHINE_START_S + b1 + b2
    hard = MACHINE_START_S + b1 + b2 + 2 * RUN_MARGIN_S
    print(
        f"Device time: start ~{MACHINE_START_S} s + {b1} s + {b2} s = {warm} s ({warm / 60:.1f} "
        f"min) on one warm machine; {hard} s ({hard / 60:.1f} min) if both runs hit their "
        f"timeouts; a cold second start adds ~{MACHINE_START_S} s. Call give_back after call 2."
    )
    print(
        "Afterwards: bash scripts/gpu-suite.sh --collect <call 1 files_at> <call 2 files_at>"
        " copies the summaries, tables and logs archives to bench/results/<date>-<gpu>-<commit>/"
        " to commit."
    )


def gpu_tag(gpu):
    """'NVIDIA H100 80GB HBM3, 580.159.04, ...' -> 'h100'; 'gpu' when nvidia-smi named none."""
    model = re.search(r"\b([A-Z]+\d+[A-Z]*)\b", gpu.split(",")[0].replace("NVIDIA", ""))
    return model.group(1).lower() if model else "gpu"


def collect(dirs):
    """Copies what the calls brought back (their files_at folders) into
    bench/results/<date>-<gpu>-<commit>/, the build archive left out (binaries, not results).
    <gpu> is the model nvidia-smi named on the device (h100, h200), so that a figure is never
    filed under another card than the one that made it."""
    files = [f for d in dirs for f in sorted(Path(d).iterdir()) if f.is_file()]
    summary = next((f for f in files if f.name in ("summary-1.json", "results-2.json")), None)
    if summary is None:
        sys.exit("gpu-suite: no summary-1.json or results-2.json in " + " ".join(dirs))
    s = json.loads(summary.read_text())
    name = f"{s['date'][:10]}-{gpu_tag(s['machine'].get('gpu', ''))}-{s['commit']['commit'][:7]}"
    dest = ROOT / "bench" / "results" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not f.name.startswith("build-"):
            shutil.copyfile(f, dest / f.name)
            log(f"{dest.relative_to(ROOT) / f.name}: {human(f.stat().st_size)}")
    return 0


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", action="store_true")
    g.add_argument("--prepare", action="store_true")
    g.add_argument("--prebuild", action="store_true")
    g.add_argument("--call", type=int, choices=[1, 2])
    g.add_argument("--measure", action="store_true")
    g.add_argument("--configure-only", action="store_true")
    g.add_argument("--collect", nargs="+", metavar="FILES_AT")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--hide-system", action="store_true")
    p.add_argument("--ninja-log", help="for --measure: a .ninja_log of a full CUDA build")
    p.add_argument("--tests", help="for --measure: a CPU build's longctx_tests")
    a = p.parse_args()
    if a.hide_system and not os.environ.get("LEASE_SYSTEM_HIDDEN"):
        return reexec_hidden(sys.argv[1:])
    out = Path(os.environ.get("OUT") or ROOT / "out" / "gpu-suite")
    if a.plan:
        return plan()
    if a.prepare:
        return prepare()
    if a.prebuild:
        return prebuild()
    if a.measure:
        return measure(a.ninja_log, a.tests)
    if a.configure_only:
        return configure_only(out)
    if a.collect:
        return collect(a.collect)
    return call(a.call, a.dry_run, out)


def prebuild():
    """Builds the call-1 targets for sm_90a here (no device time; tens of minutes on 2 cores)
    and packs the binaries into .lease/build.tar.xz for call 1 to try first."""
    env = unpack_deps()
    build = ROOT / "build-lease"
    logs = WORK / "prebuild"
    logs.mkdir(parents=True, exist_ok=True)
    summary = {}
    b = build_step(1, False, logs, Deadline(6 * 3600), env, summary, use_archive=False)
    if b is None:
        print(json.dumps(summary, indent=1))
        return 1
    size = pack_build(b, BUILD_ARCHIVE, preset=6)
    record_commit("--prebuild")
    log(f"{BUILD_ARCHIVE.relative_to(ROOT)}: {human(size)}")
    print_travel_sizes()
    return 0


if __name__ == "__main__":
    sys.exit(main() or 0)
