#!/usr/bin/env bash
# The GPU check, one command from anywhere in the repository (README, "GPU check"):
#
#   bash tools/gpu_check.sh              # on one CUDA GPU: report in $OUT, else outputs/gpu_check/
#   bash tools/gpu_check.sh --dry-run    # on a CPU machine: every stage prepared, CUDA stages skipped
#   bash tools/gpu_check.sh --help       # stages, time boxes, options
#
# Needs the wheels in .whl/ (bash tools/gpu_wheels.sh) where the machine lacks the project's packages.
# PYTHON picks the interpreter (default: python3, the one that has torch).
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" tools/gpu_check.py "$@"
