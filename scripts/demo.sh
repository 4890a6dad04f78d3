#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default set:
# generate H, H0, S with SOC for real crystals with GPAW, validate them, score the H0 baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
exec .venv/bin/materials-ham demo "$@"
