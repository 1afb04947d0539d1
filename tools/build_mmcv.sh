#!/usr/bin/env bash
# Build onedl-mmcv (with its compiled ops) for the torch in the given venv, once, and cache the wheel
# outside the clone so that later installs and CI reuse it.
#
# Why a script: mmcv ships no wheels for current torch, and its setup.py pins `-std=c++17`,
# while torch >= 2.10 headers need C++20. We patch that flag in the unpacked sdist (never an
# installed file), build without isolation against the venv's torch, and cache the result.
# GPU users: set FORCE_CUDA=1 (and TORCH_CUDA_ARCH_LIST) on a machine with nvcc to get CUDA ops;
# the cache key includes the flavour, so CPU and CUDA wheels never mix. MMCV_SDIST=path/to/onedl_mmcv-*.tar.gz
# builds from that source instead of downloading it (tools/gpu_check.sh, on a machine without network).
set -euo pipefail

PY=${1:?usage: build_mmcv.sh PYTHON}
MMCV_VERSION=${MMCV_VERSION:-2.3.6}
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
FLAVOUR=cpu
[ "${FORCE_CUDA:-0}" = "1" ] && FLAVOUR=cuda
CACHE=${RAVLT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ravlt/wheels}/onedl-mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG-$FLAVOUR
mkdir -p "$CACHE"

if ls "$CACHE"/*.whl >/dev/null 2>&1; then
  echo "build_mmcv: using cached wheel in $CACHE"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if [ -n "${MMCV_SDIST:-}" ]; then
    cp "$MMCV_SDIST" "$work"/
  else
    "$PY" -m pip download --no-deps --no-binary :all: -d "$work" "onedl-mmcv==$MMCV_VERSION"
  fi
  tar -xzf "$work"/onedl_mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/onedl_mmcv-$MMCV_VERSION"
  sed -i 's/-std=c++17/-std=c++20/g; s/-std=c++14/-std=c++20/g' "$src/setup.py"
  echo "build_mmcv: compiling mmcv $MMCV_VERSION ops ($FLAVOUR) for torch $TORCH_VERSION — about 10 minutes on 2 cores"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$PY" -m pip wheel --no-deps --no-build-isolation -w "$work/dist" "$src"
  cp "$work"/dist/*.whl "$CACHE"/
fi
"$PY" -m pip install --no-deps "$CACHE"/*.whl
