#!/usr/bin/env bash
# llama.cpp's llama-bench beside orcd on the same GPU.
#
# usage: bench/llama_cpp.sh fetch DEST
#   Needs network access. Downloads the llama-cpp-python 0.3.36 source
#   distribution from PyPI with pip (sha256-checked) and extracts from its
#   vendor/llama.cpp only what a CUDA build of llama-bench needs (ggml with its
#   CPU and CUDA backends, src, include, common, vendor, cmake, the tools the
#   top CMakeLists.txt adds; no tests, examples, models, docs, web UI) into DEST
#   (about 25 MB) with the vendored llama.cpp commit in DEST/LLAMA_CPP_COMMIT,
#   then prints its size.
#
# usage: bench/llama_cpp.sh build SRC BUILD_DIR OUT
#   On the GPU machine, offline: only the build step of `bench` below (so that it
#   can run beside other work), logs in OUT.
#
# usage: bench/llama_cpp.sh bench SRC BUILD_DIR MODEL OUT
#   On the GPU machine, offline. Configures and builds llama-bench from SRC (a
#   DEST of `fetch`) with CUDA for sm_90 in BUILD_DIR (Release, Ninja, all cores;
#   skipped when BUILD_DIR already holds the binary) and prints how long that
#   took; then runs
#     llama-bench -m MODEL -ngl 99 -fa 1 -p 512,2048 -n 128 -r 10 -o md
#     llama-bench -m MODEL -ngl 99 -fa 1 -p 0 -n 128 -d 8192 -r 10 -o md
#   (prefill pp512/pp2048 and decode tg128 from an empty cache, then tg128 after
#   8,192 tokens of context), writing both tables to OUT/llama_bench.md and
#   printing them. llama.cpp's CUDA backend needs cuBLAS: when the CUDA toolkit
#   has none, the one a Python package ships (nvidia-cublas, a dependency of
#   PyTorch's CUDA wheels) is used. Environment: LLAMA_CUDA_ARCH (default 90),
#   CUBLAS_DIR (a folder with include/cublas_v2.h and lib/libcublas.so.*),
#   CUDA_DRIVER_LIB (libcuda.so, when the toolkit has no stub and the driver's is
#   not where ldconfig or /usr/local/nvidia would show it).
set -euo pipefail

VERSION=0.3.36
SDIST=llama_cpp_python-$VERSION.tar.gz
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

fetch() {
  local dest=$1 tmp top
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  # pip reads the package's metadata after the download: with the build backend
  # (scikit-build-core) already installed that takes seconds, else pip installs
  # it into an isolated environment first.
  local pip_args=(download "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -d "$tmp")
  python3 -m pip "${pip_args[@]}" --no-build-isolation > "$tmp/pip.log" 2>&1 \
    || python3 -m pip "${pip_args[@]}" >> "$tmp/pip.log" 2>&1 || { tail -20 "$tmp/pip.log" >&2; exit 1; }
  echo "$SHA256  $tmp/$SDIST" | sha256sum -c --quiet - || { echo "checksum mismatch: $SDIST" >&2; exit 1; }

  top=llama_cpp_python-$VERSION/vendor/llama.cpp
  # tools/CMakeLists.txt adds these unconditionally (server, cli and ui only with
  # LLAMA_BUILD_SERVER, which the bench mode turns off).
  local tools=(CMakeLists.txt llama-bench batched-bench gguf-split imatrix completion perplexity quantize
               tokenize tts mtmd cvector-generator export-lora fit-params results rpc)
  local members=(CMakeLists.txt LICENSE licenses cmake include src common vendor app ggml)
  local t
  for t in "${tools[@]}"; do members+=("tools/$t"); done
  # ggml backends other than CPU and CUDA are added only when enabled (HIP and
  # MUSA build the CUDA sources for other GPUs).
  local skip=(blas cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn)
  local excludes=()
  for t in "${skip[@]}"; do excludes+=(--exclude="$top/ggml/src/ggml-$t"); done
  rm -rf "$dest"
  mkdir -p "$dest"
  tar xzf "$tmp/$SDIST" -C "$dest" --strip-components=3 "${excludes[@]}" "${members[@]/#/$top/}"
  # The llama.cpp commit the package vendors (its git submodule's HEAD).
  tar xzf "$tmp/$SDIST" -O "llama_cpp_python-$VERSION/.git/modules/vendor/llama.cpp/HEAD" > "$dest/LLAMA_CPP_COMMIT" \
    2> /dev/null || echo unknown > "$dest/LLAMA_CPP_COMMIT"
  echo "llama.cpp $(cat "$dest/LLAMA_CPP_COMMIT") (llama-cpp-python $VERSION) in $dest: $(du -sh "$dest" | cut -f1)"
}

# llama.cpp's CUDA backend links cuBLAS. When the CUDA toolkit has none, the
# folder (with include/ and lib/) of a cuBLAS that a Python package ships
# (nvidia-cublas, which PyTorch's CUDA wheels install); empty otherwise.
cublas_dir() {
  local root lib site
  [ -n "${CUBLAS_DIR:-}" ] && { echo "$CUBLAS_DIR"; return; }
  for root in ${CUDA_HOME:-} /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc)")")"; do
    ls "$root"/lib64/libcublas.so* "$root"/targets/*/lib/libcublas.so* > /dev/null 2>&1 && return
  done
  for site in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + sys.path[1:]))' 2>/dev/null); do
    lib=$(find "$site"/nvidia -name 'libcublas.so.*' 2>/dev/null | head -1)
    if [ -n "$lib" ] && [ -f "$(dirname "$(dirname "$lib")")/include/cublas_v2.h" ]; then
      dirname "$(dirname "$lib")"; return
    fi
  done
}

# llama.cpp's CUDA backend also links the driver library (libcuda), which CMake
# looks for among the toolkit's stubs: the driver's own when there is no stub.
driver_lib() {
  local root
  [ -n "${CUDA_DRIVER_LIB:-}" ] && { echo "$CUDA_DRIVER_LIB"; return; }
  for root in ${CUDA_HOME:-} /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc)")")"; do
    ls "$root"/lib64/stubs/libcuda.so "$root"/targets/*/lib/stubs/libcuda.so > /dev/null 2>&1 && return
  done
  ldconfig -p 2>/dev/null | grep -m1 -o '/[^ ]*/libcuda\.so\(\.1\)\?$' && return
  find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 -name 'libcuda.so*' 2>/dev/null | head -1
}

build() {
  local src build out start bin
  src=$(realpath "$1"); build=$2; out=$3
  mkdir -p "$out" "$build"
  build=$(realpath "$build"); out=$(realpath "$out")
  bin=$build/bin/llama-bench
  # SRC may lie inside another git checkout (this repository): keep llama.cpp's
  # build info from reporting that checkout's commit.
  export GIT_CEILING_DIRECTORIES=$(dirname "$src")
  if [ -x "$bin" ]; then
    echo "llama-bench already built in $build"
    return
  fi
  start=$(date +%s)
  local extra=() dir lib
  dir=$(cublas_dir)
  if [ -n "$dir" ]; then
    echo "cuBLAS from $dir (not in the CUDA toolkit)"
    extra+=(-DCUDA_cublas_LIBRARY="$dir/lib/$(ls "$dir/lib" | grep -m1 '^libcublas\.so')"
            -DCUDA_cublasLt_LIBRARY="$dir/lib/$(ls "$dir/lib" | grep -m1 '^libcublasLt\.so')"
            -DCMAKE_CUDA_FLAGS="-I$dir/include" -DCMAKE_CXX_FLAGS="-I$dir/include")
  fi
  lib=$(driver_lib)
  if [ -n "$lib" ]; then
    echo "CUDA driver library $lib (no stub in the CUDA toolkit)"
    extra+=(-DCUDA_cuda_driver_LIBRARY="$lib")
  fi
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${LLAMA_CUDA_ARCH:-90}" -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    "${extra[@]}" > "$out/llama_configure.log" 2>&1 || { tail -30 "$out/llama_configure.log"; exit 1; }
  cmake --build "$build" --target llama-bench -j "$(nproc)" > "$out/llama_build.log" 2>&1 \
    || { grep -E "error|FAILED" "$out/llama_build.log" | head -30; exit 1; }
  echo "llama-bench built in $(( $(date +%s) - start )) s"
}

bench() {
  local src build model out bin commit
  src=$(realpath "$1"); build=$2; model=$(realpath "$3"); out=$4
  build "$src" "$build" "$out"
  build=$(realpath "$build"); out=$(realpath "$out")
  bin=$build/bin/llama-bench
  commit=$(cat "$src/LLAMA_CPP_COMMIT" 2> /dev/null || echo unknown)
  local common=(-m "$model" -ngl 99 -fa 1 -r 10 -o md)
  {
    echo "llama.cpp ${commit:0:10} (llama-cpp-python $VERSION), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo
    "$bin" "${common[@]}" -p 512,2048 -n 128 && echo && "$bin" "${common[@]}" -p 0 -n 128 -d 8192
  } 2> "$out/llama_bench.err" | tee "$out/llama_bench.md" || { tail -20 "$out/llama_bench.err"; exit 1; }
}

case "${1:-}" in
  fetch) [ $# -eq 2 ] || usage; fetch "$2" ;;
  build) [ $# -eq 4 ] || usage; build "$2" "$3" "$4" ;;
  bench) [ $# -eq 5 ] || usage; bench "$2" "$3" "$4" "$5" ;;
  *) usage ;;
esac
