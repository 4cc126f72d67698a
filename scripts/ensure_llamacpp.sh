#!/usr/bin/env bash
# Build a CPU llama.cpp (llama-server, llama-quantize) from the PyPI sdist of
# llama-cpp-python, which vendors llama.cpp (and convert_hf_to_gguf.py).
# Idempotent: cached under ~/.cache/idtune/llama.cpp/VERSION/.
set -euo pipefail
VERSION="${IDTUNE_LLAMACPP_VERSION:-0.3.36}"
PY="${PYTHON:-python3}"
ROOT="${IDTUNE_LLAMACPP_HOME:-$HOME/.cache/idtune/llama.cpp}/$VERSION"
JOBS="${JOBS:-2}"
if [ -x "$ROOT/bin/llama-server" ] && [ -x "$ROOT/bin/llama-quantize" ] && [ -f "$ROOT/src/convert_hf_to_gguf.py" ]; then
  echo "llama.cpp $VERSION ready in $ROOT"
  exit 0
fi
mkdir -p "$ROOT"
WORK="$(mktemp -d "$ROOT/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
# only llama-cpp-python itself as source: its build requirements may come as wheels
if [ -n "${IDTUNE_LLAMACPP_SDIST:-}" ]; then
  mkdir -p "$WORK/dl" && cp "$IDTUNE_LLAMACPP_SDIST" "$WORK/dl/"
else
  "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$WORK/dl" \
    "llama-cpp-python==$VERSION"
fi
tar -xzf "$WORK"/dl/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
dl=$(date +%s)
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >"$WORK/cmake.log"
nice -n 5 cmake --build "$WORK/build" -j "$JOBS" --target llama-server llama-quantize >"$WORK/build.log"
end=$(date +%s)
rm -rf "$ROOT/bin" "$ROOT/src"
mkdir -p "$ROOT/bin"
cp "$WORK/build/bin/llama-server" "$WORK/build/bin/llama-quantize" "$ROOT/bin/"
# the converter and its in-tree helpers (gguf-py is the pip `gguf` package)
mkdir -p "$ROOT/src"
cp "$SRC"/convert_hf_to_gguf.py "$ROOT/src/"
[ -d "$SRC/conversion" ] && cp -r "$SRC/conversion" "$ROOT/src/" || true
[ -d "$SRC/gguf-py" ] && cp -r "$SRC/gguf-py" "$ROOT/src/" || true
echo "download+unpack $((dl - start)) s, build $((end - dl)) s" | tee "$ROOT/build-time.txt"
echo "llama.cpp $VERSION ready in $ROOT"
