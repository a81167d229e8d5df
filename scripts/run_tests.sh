#!/usr/bin/env bash
# Installs orcd with its test extras, then runs the C++ (googletest) and Python
# (pytest) suites, then builds and runs examples/cpp against the installed C++
# package. GPU tests skip with a reason on machines without a GPU.
# Environment: CMAKE_CUDA_ARCHITECTURES (default: the project's list) to build
# fewer CUDA targets; PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cuda_arch_arg=()
if [ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  cuda_arch_arg=(-DCMAKE_CUDA_ARCHITECTURES="$CMAKE_CUDA_ARCHITECTURES")
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES"
fi

echo "== installing orcd with its test extras"
"$PYTHON" -m pip install --quiet ".[test]"

echo "== C++ tests"
cmake -S . -B build/tests -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_arch_arg[@]}" > build-tests-configure.log
grep -E "orcd:" build-tests-configure.log || true
rm -f build-tests-configure.log
cmake --build build/tests
if [ -f build/tests/CTestTestfile.cmake ]; then
  ctest_status=0
  ctest --test-dir build/tests --output-on-failure > build/tests/ctest.log 2>&1 || ctest_status=$?
  # The summary line, and the failures if any; the skipped GPU tests give their reason in the log.
  grep -E "tests passed|\(Failed\)|\(Timeout\)|\*\*\*" build/tests/ctest.log || tail -n 30 build/tests/ctest.log
  echo "skipped: $(grep -c "(Skipped)" build/tests/ctest.log) (build/tests/ctest.log gives each reason)"
  [ "$ctest_status" -eq 0 ] || exit "$ctest_status"
else
  echo "googletest is not installed (Debian: libgtest-dev): C++ tests skipped"
fi

echo "== Python tests"
"$PYTHON" -m pytest -q -rs tests_py

bash scripts/check_cpp_package.sh build/tests
