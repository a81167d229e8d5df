#!/usr/bin/env bash
# Builds the GGUF reader fuzzer (clang, ASan+UBSan+libFuzzer) and runs it on
# one core, starting from the committed seed corpus.
#
# Usage: run_fuzzer.sh [-t SECONDS | -n RUNS] [-b BUILD_DIR] [-c WORK_CORPUS_DIR] [-- LIBFUZZER_ARGS...]
#   -t SECONDS   stop after this much time (libFuzzer -max_total_time)
#   -n RUNS      stop after this many executions (libFuzzer -runs)
#   -b DIR       build directory (default: <repo>/build/fuzz)
#   -c DIR       corpus that grows while fuzzing (default: <repo>/fuzz_corpus_out);
#                the seeds in tests_cpp/fuzz/corpus are read but never written
# Without -t or -n it runs 60 seconds. Crash inputs land in the current directory.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
build_dir="$repo_root/build/fuzz"
work_corpus="$repo_root/fuzz_corpus_out"
limit_args=()

while getopts "t:n:b:c:h" opt; do
    case "$opt" in
        t) limit_args+=("-max_total_time=$OPTARG") ;;
        n) limit_args+=("-runs=$OPTARG") ;;
        b) build_dir=$OPTARG ;;
        c) work_corpus=$OPTARG ;;
        h) sed -n '2,12p' "$0"; exit 0 ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ ${#limit_args[@]} -eq 0 ]] && limit_args=("-max_total_time=60")

cmake -S "$repo_root" -B "$build_dir" -G Ninja \
    -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DORCD_CUDA=OFF -DORCD_BUILD_PYTHON=OFF -DORCD_BUILD_TESTS=OFF -DORCD_BUILD_FUZZERS=ON
# One compile job: the fuzzer shares the machine.
ninja -C "$build_dir" -j1 fuzz_gguf_reader

mkdir -p "$work_corpus"
# -timeout: any single input slower than 1 s is reported as a hang.
exec "$build_dir/tests_cpp/fuzz/fuzz_gguf_reader" \
    "${limit_args[@]}" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 \
    "$@" "$work_corpus" "$script_dir/corpus"
