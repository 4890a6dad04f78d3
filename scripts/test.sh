#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
status=0
.venv/bin/python -m pytest "$@" || status=$?
# pytest exit code 5 means "no tests collected": treat as failure, a suite that ran nothing proves nothing
exit $status
