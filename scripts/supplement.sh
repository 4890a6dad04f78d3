#!/usr/bin/env bash
# Build a training supplement for a packed dataset (by default the mini preset of scripts/mini.sh):
#   candidates (every prototype <= 5 atoms) -> supplement (every element of the dataset in >= 3
#   training structures, never a structure of the dataset) -> generate (GPAW, resumable) -> pack -> verify.
# Usage: bash scripts/supplement.sh [DATASET_DIR] [OUT_DIR] [extra `generate` options, e.g. --workers 2]
# Train with it: python -m baselines.nextham train --dataset DATASET_DIR --extra-train OUT_DIR/dataset ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
DATASET="${1:-mini/dataset}"; OUT="${2:-mini-supplement}"; shift 2 || shift $# || true
MH=.venv/bin/materials-ham
mkdir -p "$OUT"
[[ -f "$OUT/candidates.parquet" ]] || $MH structures --preset small -o "$OUT/candidates.parquet"
# candidates that failed when the dataset itself was generated (its staging folder beside it) are not picked
SKIP=(); [[ -d "$(dirname "$DATASET")/staging/failed" ]] && SKIP=(--skip-failed "$(dirname "$DATASET")/staging")
[[ -f "$OUT/catalog.parquet" ]] || $MH supplement "$OUT/candidates.parquet" --for "$DATASET" -o "$OUT/catalog.parquet" \
    --min-per-element 3 --report "$OUT/supplement.json" "${SKIP[@]}"
/usr/bin/time -v -o "$OUT/generate.time" $MH generate "$OUT/catalog.parquet" -o "$OUT/staging" "$@"
$MH pack "$OUT/staging" -o "$OUT/dataset" --name Materials-HAM-SOC-supplement --version supplement-$(date +%Y%m%d) --overwrite
$MH verify "$OUT/dataset" --deep
echo "supplement: $OUT/dataset (train with --extra-train $OUT/dataset)"
