#!/usr/bin/env bash
# Fetch what a GPU machine without network lacks for tools/gpu_check.sh into the git-ignored .whl/:
# cp312 manylinux wheels of the packages its image does not have, py3-none-any wheels built here from
# the packages that PyPI ships as source only, and the onedl-mmcv source (gpu_check.sh compiles
# its CUDA ops there). Versions come from requirements/lock.txt, the tested set.
#
#   bash tools/gpu_wheels.sh            # then carry .whl with the working tree (README, "GPU check")
#   bash tools/gpu_wheels.sh --list     # what it fetches: kind, name, locked version
#
# The GPU image (Python 3.12, torch, torchvision, Lightning, torchmetrics, numpy, scipy, scikit-learn,
# scikit-image, matplotlib, OpenCV headless, PyYAML, rich, tqdm, tabulate, portalocker, six, regex,
# pytest, ninja, setuptools, wheel) is not carried. timm is, at the lock's version, so that the models
# are built by the timm they were tested with. A version of a package left over in .whl/ from an earlier
# lock is removed: pip refuses two versions of one package in one install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${WHEEL_DIR:-.whl}
LOCK=requirements/lock.txt
PYVER=${GPU_PYTHON_VERSION:-3.12}

# Wheels from the registry, for Python $PYVER on manylinux x86-64.
BINARY=(
  hydra-core omegaconf timm                              # configs, models
  yacs termcolor                                         # fvcore's (ravlt.tools.flops, imported by the bench)
  onedl-mmengine                                         # stage 4, with what it and mmdet/mmseg need:
  pycocotools shapely addict yapf platformdirs terminaltables prettytable wcwidth ftfy
)
# Source only on the registry: built here into pure-Python wheels.
BUILT=(antlr4-python3-runtime fvcore iopath onedl-mmdetection onedl-mmsegmentation)
# Compiled on the GPU machine (stage 4 of gpu_check.sh).
SOURCE=(onedl-mmcv)

die() { echo "error: $*" >&2; exit 1; }

pin() {  # NAME -> the version requirements/lock.txt pins
  local norm version
  norm=$(echo "$1" | tr 'A-Z_.' 'a-z--')
  version=$(awk -F'==' -v n="$norm" '{k=tolower($1); gsub(/[_.]/, "-", k)} k==n {print $2}' "$LOCK")
  [ -n "$version" ] || die "$1 is not pinned in $LOCK; add it there (make lock) or drop it from tools/gpu_wheels.sh"
  echo "$version"
}

stem() { echo "$1" | tr 'A-Z.-' 'a-z__'; }  # a distribution's file-name prefix (PEP 427 / 625)

# Keep only VERSION of NAME in $DEST (a file of another version would make pip refuse the install).
drop_other_versions() {
  local prefix f
  prefix=$(stem "$1")
  shopt -s nocaseglob nullglob
  for f in "$DEST/$prefix"-*; do
    case "${f##*/}" in
      "$prefix-$2-"* | "$prefix-$2.tar.gz" | "$prefix-$2.zip") ;;
      *) echo "removing ${f##*/} (not the locked $2)"; rm -f "$f" ;;
    esac
  done
  shopt -u nocaseglob nullglob
}

have() {  # NAME VERSION -> true when its file is already in $DEST
  local prefix found
  prefix=$(stem "$1")
  shopt -s nocaseglob
  found=$(compgen -G "$DEST/$prefix-$2-*.whl" || compgen -G "$DEST/$prefix-$2.tar.gz" || true)
  shopt -u nocaseglob
  [ -n "$found" ]
}

if [ "${1:-}" = "--list" ]; then
  for name in "${BINARY[@]}"; do echo "binary $name $(pin "$name")"; done
  for name in "${BUILT[@]}"; do echo "built $name $(pin "$name")"; done
  for name in "${SOURCE[@]}"; do echo "source $name $(pin "$name")"; done
  exit 0
elif [ $# -gt 0 ]; then
  die "unknown argument $1 (usage: bash tools/gpu_wheels.sh [--list])"
fi

mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # KIND NAME: the locked version of NAME into $DEST, unless it is there
  local kind=$1 name=$2 version f
  version=$(pin "$name")
  drop_other_versions "$name" "$version"
  have "$name" "$version" && return 0
  case $kind in
    binary)
      "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${platforms[@]}" -d "$DEST" "$name==$version" ;;
    built)
      "$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$work/built" "$name==$version"
      for f in "$work"/built/*.whl; do
        case "$f" in *-py3-none-any.whl | *-py2.py3-none-any.whl) mv "$f" "$DEST"/ ;;
          *) die "$name built into ${f##*/}, not a pure-Python wheel: it cannot travel to Python $PYVER" ;;
        esac
      done ;;
    source)
      "$PY" -m pip download -q --no-deps --no-binary=:all: -d "$DEST" "$name==$version" ;;
  esac
}

for name in "${BINARY[@]}"; do fetch binary "$name"; done
for name in "${BUILT[@]}"; do fetch built "$name"; done
for name in "${SOURCE[@]}"; do fetch source "$name"; done

echo "in $DEST:"
find "$DEST" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.tar.gz' \) -printf '%f %s\n' | sort \
  | awk '{printf "  %-70s %6d KiB\n", $1, $2 / 1024; total += $2}
         END {printf "total: %.1f MiB (the working tree and .whl travel together: 64 MiB at most)\n", total / 1048576}'
