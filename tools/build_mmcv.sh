#!/usr/bin/env bash
# Build onedl-mmcv (with its compiled ops) for the torch in the given venv, once, and cache the wheel
# outside the clone so that later installs and CI reuse it.
#
#   bash tools/build_mmcv.sh .venv/bin/python                                   # CPU ops
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="9.0" bash tools/build_mmcv.sh .venv/bin/python   # + CUDA ops, sm_90
#
# Why a script: mmcv ships no wheels for current torch, and its setup.py pins `-std=c++17`, while
# torch >= 2.10 headers need C++20. We patch that flag in the unpacked sdist (never an installed file),
# build without isolation against the venv's torch, and cache the result.
# CUDA: the nvcc on PATH (or in CUDA_HOME) is used when its version is torch's CUDA version; otherwise
# the compiler comes from PyPI (nvidia-cuda-nvcc and friends, the same CUDA version as torch, installed
# into the venv beside torch's own CUDA libraries). Only the archs in TORCH_CUDA_ARCH_LIST are built
# (default: the visible GPUs'). The cache key holds the flavour, CUDA version and archs, so wheels of
# different builds never mix. MMCV_SDIST=path/to/onedl_mmcv-*.tar.gz builds from that source instead of
# downloading it (on a machine without network).
set -euo pipefail

PY=${1:?usage: build_mmcv.sh PYTHON}
MMCV_VERSION=${MMCV_VERSION:-2.3.6}
JOBS=${MAX_JOBS:-$(nproc)}
# Measured: the CPU ops take about 32 core-minutes on an AMD EPYC (AVX-512) with torch 2.14; the CUDA
# ops add about CUDA_CORE_MINUTES_PER_ARCH core-minutes per architecture (the whole sm_90 build with
# the PyPI nvcc 13.0 took 62 core-minutes there: 31 min 33 s on 2 cores).
CPU_CORE_MINUTES=32
CUDA_CORE_MINUTES_PER_ARCH=${CUDA_CORE_MINUTES_PER_ARCH:-32}

say() { echo "build_mmcv: $*"; }
# pip warns once per package for every configured local index folder that lacks it; not ours to show.
hide_pip_noise() { grep -v "is ignored: it is neither a file nor a directory" || true; }

TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
TORCH_CUDA=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
FLAVOUR=cpu

# --- CUDA: archs and compiler -------------------------------------------------------------------------
nvcc_version() { "$1" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p'; }

# A CUDA_HOME made of the PyPI compiler packages and torch's CUDA libraries in the venv (one folder per
# CUDA 13 install, nvidia/cu13; one per package before): bin/ and nvvm/ are the compiler package's own
# (nvcc finds its tools relative to itself), include/ and lib64/ gather every package's headers and libraries.
pypi_cuda_home() {
  local major=${TORCH_CUDA%%.*} suffix=""
  [ "$major" -lt 13 ] && suffix="-cu$major"
  say "no nvcc for CUDA $TORCH_CUDA on PATH: installing the compiler from PyPI (nvidia-cuda-nvcc$suffix==$TORCH_CUDA.*)"
  "$PY" -m pip install -q "nvidia-cuda-nvcc$suffix==$TORCH_CUDA.*" "nvidia-cuda-runtime$suffix==$TORCH_CUDA.*" \
    "nvidia-cuda-cccl$suffix==$TORCH_CUDA.*" \
    $([ "$major" -ge 13 ] && echo "nvidia-cuda-crt==$TORCH_CUDA.*" "nvidia-nvvm==$TORCH_CUDA.*") 2>&1 | hide_pip_noise
  local nvidia home=$1 root lib
  nvidia=$("$PY" -c 'import nvidia; print(list(nvidia.__path__)[0])')
  root=$(dirname "$(dirname "$(ls "$nvidia"/*/bin/nvcc | head -1)")")
  mkdir -p "$home/include" "$home/lib64"
  ln -s "$root/bin" "$home/bin"
  ln -s "$root/nvvm" "$home/nvvm"  # cicc and libdevice, which nvcc looks for beside bin/
  for dir in "$nvidia"/*/include; do cp -rsn "$dir/." "$home/include/"; done
  for lib in "$nvidia"/*/lib/lib*.so*; do
    ln -sf "$lib" "$home/lib64/"
    ln -sf "$lib" "$home/lib64/$(basename "${lib%%.so*}").so"  # unversioned names, for -lcudart & co.
  done
  for lib in "$nvidia"/*/lib/lib*.a; do ln -sf "$lib" "$home/lib64/"; done  # cudart_static, cudadevrt: nvcc's default link
}

ARCH_KEY=""
if [ "${FORCE_CUDA:-0}" = "1" ]; then
  FLAVOUR=cuda
  if [ -z "$TORCH_CUDA" ]; then
    echo "error: FORCE_CUDA=1 but the torch in $PY is a CPU build; install a CUDA build of torch first" >&2
    exit 2
  fi
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch
print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))')
    if [ -z "$TORCH_CUDA_ARCH_LIST" ]; then
      echo "error: FORCE_CUDA=1 without a visible GPU needs TORCH_CUDA_ARCH_LIST, e.g. \"9.0\" (H100/H200) or \"8.0;9.0\"" >&2
      exit 2
    fi
  fi
  export TORCH_CUDA_ARCH_LIST FORCE_CUDA
  ARCH_KEY=-$TORCH_CUDA-sm$(echo "$TORCH_CUDA_ARCH_LIST" | tr -d '.' | tr ' ;,' '---' | tr -s '-')
fi

CACHE=${RAVLT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ravlt/wheels}/onedl-mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG-$FLAVOUR$ARCH_KEY
mkdir -p "$CACHE"

if ls "$CACHE"/*.whl >/dev/null 2>&1; then
  say "using the cached wheel in $CACHE"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if [ "$FLAVOUR" = cuda ]; then
    nvcc=$(command -v nvcc || true)
    [ -z "$nvcc" ] && [ -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ] && nvcc=$CUDA_HOME/bin/nvcc
    if [ -n "$nvcc" ] && [ "$(nvcc_version "$nvcc")" = "$TORCH_CUDA" ]; then
      export CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
    else
      pypi_cuda_home "$work/cuda"
      export CUDA_HOME=$work/cuda
    fi
    export PATH=$CUDA_HOME/bin:$PATH
    say "CUDA $TORCH_CUDA ops for sm ${TORCH_CUDA_ARCH_LIST} with $CUDA_HOME/bin/nvcc ($(nvcc_version "$CUDA_HOME/bin/nvcc"))"
  fi
  # The build's own tools, installed only when missing (a machine without an index has them already).
  if ! "$PY" -c 'import pkg_resources, wheel, packaging, ninja' 2>/dev/null; then
    "$PY" -m pip install -q 'setuptools<82' wheel packaging ninja 2>&1 | hide_pip_noise
  fi
  if [ -n "${MMCV_SDIST:-}" ]; then
    cp "$MMCV_SDIST" "$work"/
  else
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$work" "onedl-mmcv==$MMCV_VERSION" 2>&1 | hide_pip_noise
  fi
  tar -xzf "$work"/onedl_mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/onedl_mmcv-$MMCV_VERSION"
  sed -i 's/-std=c++17/-std=c++20/g; s/-std=c++14/-std=c++20/g' "$src/setup.py"

  core_minutes=$CPU_CORE_MINUTES
  if [ "$FLAVOUR" = cuda ]; then
    archs=$(echo "$TORCH_CUDA_ARCH_LIST" | tr ' ;,' '\n\n\n' | grep -c .)
    core_minutes=$((core_minutes + archs * CUDA_CORE_MINUTES_PER_ARCH))
  fi
  say "one-time build of mmcv $MMCV_VERSION's compiled ops ($FLAVOUR) for torch $TORCH_VERSION starts now:" \
      "about $(( (core_minutes + JOBS - 1) / JOBS + 1 )) minutes with $JOBS parallel jobs (MAX_JOBS)." \
      "The wheel is cached in $CACHE for later installs."
  log=$work/build.log
  start=$SECONDS
  shown=0
  # ninja numbers its compile steps "[k/n]": report every tenth of them with the time left at this pace.
  MMCV_WITH_OPS=1 MAX_JOBS=$JOBS "$PY" -m pip wheel -v --no-deps --no-build-isolation -w "$work/dist" "$src" 2>&1 \
    | tee "$log" | while IFS= read -r line; do
        if [[ $line =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\] ]]; then
          k=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]} elapsed=$((SECONDS - start))
          if (( k * 10 / n > shown )); then
            shown=$((k * 10 / n))
            say "compiled $k of $n files, $((elapsed / 60)) min so far, about $(( (elapsed * (n - k) / k + 59) / 60 )) min left"
          fi
        fi
      done || {
    cp "$log" "${TMPDIR:-/tmp}/build_mmcv.log"
    echo "error: the mmcv build failed; its last lines (full log: ${TMPDIR:-/tmp}/build_mmcv.log):" >&2
    tail -n 25 "$log" >&2
    exit 1
  }
  cp "$work"/dist/*.whl "$CACHE"/
  say "built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
fi
"$PY" -m pip install -q --no-deps --force-reinstall "$CACHE"/*.whl 2>&1 | hide_pip_noise
