#!/usr/bin/env bash
# Builds examples/cpp, a program that knows orcd only through find_package(orcd),
# against orcd installed both ways, and runs it on a tiny synthetic model:
#   1. `cmake --install` of a CMake build (default build/tests, which
#      scripts/run_tests.sh has just built) into a temporary prefix;
#   2. the pip-installed wheel, found with `python -m orcd --cmake-dir`.
# Usage: scripts/check_cpp_package.sh [CMAKE_BUILD_DIR]. Environment: PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
build_dir=${1:-build/tests}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prompt=(32 34 36)  # " the cat sat" in the tiny model's vocabulary

echo "== C++ package: cmake --install $build_dir, then examples/cpp with CMAKE_PREFIX_PATH"
cmake --install "$build_dir" --prefix "$work/prefix" > /dev/null
cmake -S examples/cpp -B "$work/example-prefix" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/example-prefix" > /dev/null
"$PYTHON" examples/cpp/make_tiny_model.py "$work/tiny.gguf"
"$work/example-prefix/generate" "$work/tiny.gguf" 8 "${prompt[@]}" | tee "$work/from-prefix.txt"

echo "== C++ package: examples/cpp against the installed wheel, orcd_DIR=\$($PYTHON -m orcd --cmake-dir)"
cmake_dir=$("$PYTHON" -m orcd --cmake-dir)
echo "$cmake_dir"
cmake -S examples/cpp -B "$work/example-wheel" -G Ninja -Dorcd_DIR="$cmake_dir" > "$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/example-wheel" > /dev/null
"$work/example-wheel/generate" "$work/tiny.gguf" 8 "${prompt[@]}" > "$work/from-wheel.txt"
diff "$work/from-prefix.txt" "$work/from-wheel.txt"
echo "the wheel's package gives the same output"
