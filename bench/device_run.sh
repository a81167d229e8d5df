#!/usr/bin/env bash
# Builds orcd with CUDA, runs the C++ tests, compute-sanitizer on the CUDA op
# tests, the CUDA-vs-CPU pytest suite and the benchmark, on a GPU machine.
#
# usage: bench/device_run.sh SRC_DIR MODEL_SKELETON_DIR OUT_DIR [GOOGLETEST_SRC] [SYNTH_TOOL]
#   SRC_DIR             this repository
#   MODEL_SKELETON_DIR  holds qwen2.5-coder-0.5b-instruct-q4_k_m.{head,json}
#   OUT_DIR             logs go here
#   GOOGLETEST_SRC      googletest sources, built when googletest is not installed
#   SYNTH_TOOL          synth_gguf.py (default: MODEL_SKELETON_DIR/../tools/synth_gguf.py)
# Environment:
#   STAGES     default "build ctest sanitize pytest diag bench matvec profile timeline llama"
#              (stalls, not among the defaults: ncu's throughput, warp-state and
#                occupancy sections of the output-layer product and of one layer's
#                kernels in a decode step at context 8,192 -> OUT/stalls.txt)
#   SANITIZE_FILTER  the googletest filter of stage sanitize (default CudaOps.*)
#   SANITIZE_TIMEOUT seconds each sanitizer tool may run (default 300)
#              timeline: each kernel's share of a real decode step (graph replays,
#                CUPTI through torch.profiler) at contexts 64 and 8,192 -> OUT/timeline.log
#              matvec: bench_cuda_matvec, the decode product of every type and shape
#                against the copy bandwidth (MATVEC_ARGS: its options) -> OUT/matvec.log
#              llama: llama.cpp's llama-bench on the same synthetic model (prefill
#                pp512/pp2048, tg128, tg128 after 8,192 tokens) -> OUT/llama_bench.md;
#                runs only when LLAMA_SRC is set
#              matvec_ab (not among the defaults): bench_cuda_matvec of this tree against
#                that of each checkout in BASE_SRC (say `git archive` of the commit
#                before a change), all run in turn, twice (base1, base2, ..., new, base1,
#                ...), with MATVEC_ARGS -> OUT/matvec_ab.log
#   BASE_SRC   the checkouts that stage matvec_ab compares against, separated by spaces
#   LLAMA_SRC  llama.cpp sources as `bench/llama_cpp.sh fetch DEST` extracts them (on a
#              machine with network access; this one needs none)
#   LLAMA_BUILD  where llama-bench is built (default /tmp/llama-build; an existing
#              binary there is reused, an interrupted build resumes). The build runs
#              in the background from the start, beside the untimed stages; stages
#              bench and llama wait for it
set -uo pipefail
SRC=$(realpath "$1"); MODELS=$(realpath "$2"); OUT=$(realpath "$3"); GTEST_SRC=${4:-}
SYNTH=${5:-$MODELS/../tools/synth_gguf.py}
STAGES=${STAGES:-build ctest sanitize pytest diag bench matvec profile timeline llama}
BUILD=/tmp/orcd-build
mkdir -p "$OUT"
has() { [[ " $STAGES " == *" $1 "* ]]; }
say() { echo; echo "=== $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -1

if has build; then
  say build
  prefix=()
  if [ -n "$GTEST_SRC" ]; then
    cmake -S "$GTEST_SRC" -B /tmp/gtest-build -G Ninja -DCMAKE_INSTALL_PREFIX=/tmp/gtest -DBUILD_GMOCK=OFF > "$OUT/gtest.log" 2>&1 \
      && cmake --build /tmp/gtest-build >> "$OUT/gtest.log" 2>&1 && cmake --install /tmp/gtest-build >> "$OUT/gtest.log" 2>&1
    prefix=(-DCMAKE_PREFIX_PATH=/tmp/gtest)
  fi
  start=$(date +%s)
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DORCD_CUDA=ON \
    -DORCD_BUILD_PYTHON=ON -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" "${prefix[@]}" > "$OUT/configure.log" 2>&1 \
    || { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
  echo "built in $(( $(date +%s) - start )) s"
  cp "$BUILD"/_core*.so "$SRC/python/orcd/"
fi
export PYTHONPATH="$SRC/python${PYTHONPATH:+:$PYTHONPATH}"

# llama-bench builds (minutes, CPU only) beside the GPU stages that do not time
# anything; the timed stages wait for it (see stage llama).
llama_build_pid=
if has llama && [ -n "${LLAMA_SRC:-}" ]; then
  nice -n 10 bash "$SRC/bench/llama_cpp.sh" build "$LLAMA_SRC" "${LLAMA_BUILD:-/tmp/llama-build}" "$OUT" \
    > "$OUT/llama_build_stage.log" 2>&1 &
  llama_build_pid=$!
fi
wait_for_llama_build() {
  [ -n "$llama_build_pid" ] || return 0
  wait "$llama_build_pid"; llama_build_pid=
  cat "$OUT/llama_build_stage.log"
}

if has ctest; then
  say ctest
  ctest --test-dir "$BUILD" -j 4 --output-on-failure > "$OUT/ctest.log" 2>&1
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | head -30
  "$BUILD/tests_cpp/orcd_tests" --gtest_filter='CudaOps.*' 2>&1 | grep -E "^\[ *(OK|FAILED|PASSED|SKIPPED) " | head -20
fi

if has sanitize; then
  say compute-sanitizer
  for tool in memcheck racecheck; do
    timeout "${SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests_cpp/orcd_tests" \
      --gtest_filter="${SANITIZE_FILTER:-CudaOps.*}" > "$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool: exit $? ; $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer-$tool.log" | tail -1)"
  done
fi

SYNTH_MODEL=/tmp/synth-qwen2.5-0.5b-q4_k_m.gguf
if has pytest || has diag || has bench || has profile || has stalls || has timeline || has llama; then
  [ -f "$SYNTH_MODEL" ] || python3 "$SYNTH" "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m" "$SYNTH_MODEL" > /dev/null
fi

if has pytest; then
  say pytest
  ORCD_SYNTH_QWEN=$SYNTH_MODEL python3 -m pytest -q -rs -s "$SRC/tests_py/test_cuda_vs_cpu.py" \
    "$SRC/tests_py/test_session_choice.py" -p no:cacheprovider > "$OUT/pytest.log" 2>&1
  grep -E "cosine|greedy|passed|failed|Error|assert" "$OUT/pytest.log" | tail -25
fi

if has diag; then
  say "diag: CUDA paths against the CPU, per position"
  python3 "$SRC/bench/diag_positions.py" "$SYNTH_MODEL" 2>&1 | tee "$OUT/diag.log"
fi

if has bench; then
  say bench
  wait_for_llama_build
  python3 -c "
import torch
x = torch.empty(1 << 30, dtype=torch.uint8, device='cuda'); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ts = []
for _ in range(10):
    s.record(); y.copy_(x); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
ts.sort(); print(f'device-to-device copy: {2 * (1 << 30) / (ts[5] * 1e-3) / 1e9:.0f} GB/s (read + write, median of 10)')
"
  python3 -m orcd bench -m "$SYNTH_MODEL" --device cuda -p 512,2048 -n 128 -r 5 2>&1 | tee "$OUT/bench.log"
  python3 -m orcd bench -m "$SYNTH_MODEL" --device cuda -p 0 -n 128 -d 8192 -r 5 2>&1 | grep tg128 | tee -a "$OUT/bench.log"
fi

if has matvec; then
  say "matvec: decode products (bench_cuda_matvec ${MATVEC_ARGS:-})"
  cmake --build "$BUILD" --target bench_cuda_matvec > "$OUT/matvec_build.log" 2>&1 \
    || grep -E "error|FAILED" "$OUT/matvec_build.log" | head -20
  # shellcheck disable=SC2086
  "$BUILD/bench_cuda_matvec" ${MATVEC_ARGS:-} 2>&1 | tee "$OUT/matvec.log"
fi

if has matvec_ab; then
  say "matvec_ab: this tree against ${BASE_SRC:-(BASE_SRC not set)} (bench_cuda_matvec ${MATVEC_ARGS:-})"
  if [ -n "${BASE_SRC:-}" ]; then
    # Each checkout's bench alone, built side by side; a build folder made from other
    # sources (a base of an earlier call) is made anew, this tree's from stage build kept.
    bench_build() {  # SRC BUILD_DIR LOG
      local src; src=$(realpath "$1")
      { grep -qsx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$2/CMakeCache.txt" \
          || { rm -rf "$2" && cmake -S "$src" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release \
                 -DCMAKE_CUDA_ARCHITECTURES=90 -DORCD_CUDA=ON -DORCD_BUILD_PYTHON=OFF; } \
          && cmake --build "$2" --target bench_cuda_matvec; } > "$3" 2>&1
    }
    sides=() bins=() pids=()
    n=0
    for base in $BASE_SRC; do
      n=$((n + 1))
      sides+=("base$n: $base") bins+=("/tmp/orcd-base-build-$n/bench_cuda_matvec")
      bench_build "$base" "/tmp/orcd-base-build-$n" "$OUT/matvec_ab_build_$n.log" & pids+=($!)
    done
    bench_build "$SRC" "$BUILD" "$OUT/matvec_ab_build.log" & pids+=($!)
    wait "${pids[@]}"
    grep -hE "error|FAILED" "$OUT"/matvec_ab_build*.log | head -20
    sides+=("new: this tree") bins+=("$BUILD/bench_cuda_matvec")
    for round in 1 2; do
      for i in "${!bins[@]}"; do
        echo "-- ${sides[$i]} (round $round)"
        # shellcheck disable=SC2086
        "${bins[$i]}" ${MATVEC_ARGS:-} 2>&1 | grep -E "^\| [A-Z]|^device"
      done
    done | tee "$OUT/matvec_ab.log"
  else
    echo "skipped: BASE_SRC is not set"
  fi
fi

if has profile; then
  say "profile: greedy decode steps, per kernel (ncu, no cache flush; times of one step)"
  python3 "$SRC/bench/profile_decode.py" "$SYNTH_MODEL" 200 64 | tee "$OUT/profile.log"
  python3 "$SRC/bench/profile_decode.py" "$SYNTH_MODEL" 200 8192 | tee -a "$OUT/profile.log"
  for ctx in 64 8192; do
    timeout 200 ncu --profile-from-start off --graph-profiling node --cache-control none --clock-control none --csv \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      python3 "$SRC/bench/profile_decode.py" "$SYNTH_MODEL" 1 $ctx > "$OUT/ncu_$ctx.csv" 2> "$OUT/ncu_$ctx.err"
    echo "-- context $ctx"; python3 "$SRC/bench/ncu_summary.py" "$OUT/ncu_$ctx.csv" | head -24
  done
fi

if has stalls; then
  say "stalls: ncu sections of the decode kernels (context 8,192)"
  for pick in "matvec1_stream 1" "matvec1_kernel|matvec1_split|attention_decode 5"; do
    read -r kernels launches <<< "$pick"
    timeout 200 ncu --profile-from-start off --graph-profiling node --cache-control none --clock-control none \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
      --section Occupancy --section LaunchStats -k "regex:$kernels" --launch-count "$launches" \
      python3 "$SRC/bench/profile_decode.py" "$SYNTH_MODEL" 1 8192 >> "$OUT/stalls.txt" 2>&1
  done
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Achieved Occupancy|Stall|Registers Per|Block Limit" "$OUT/stalls.txt" | head -60
fi

if has timeline; then
  say "timeline: each kernel's share of a decode step (graph replays)"
  for ctx in 64 8192; do python3 "$SRC/bench/timeline_decode.py" "$SYNTH_MODEL" $ctx 8 2>&1 | tee -a "$OUT/timeline.log"; done
fi

if has llama; then
  say "llama: llama.cpp llama-bench on the same model"
  if [ -n "${LLAMA_SRC:-}" ]; then
    wait_for_llama_build
    bash "$SRC/bench/llama_cpp.sh" bench "$LLAMA_SRC" "${LLAMA_BUILD:-/tmp/llama-build}" "$SYNTH_MODEL" "$OUT"
  else
    echo "skipped: LLAMA_SRC is not set (bench/llama_cpp.sh fetch DEST extracts the sources)"
  fi
fi
