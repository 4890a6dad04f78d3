#!/usr/bin/env bash
# Build the `mini` preset of Materials-HAM-SOC end to end on this machine:
#   curate -> generate (GPAW, resumable) -> pack (Zarr v3) -> verify -> dataset card.
# Usage: bash scripts/mini.sh [OUT_DIR] [extra `generate` options, e.g. --workers 2]
# Re-running resumes: finished structures are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
OUT="${1:-mini}"; shift || true
MH=.venv/bin/materials-ham
mkdir -p "$OUT"
[[ -f "$OUT/catalog.parquet" ]] || $MH structures --preset mini -o "$OUT/catalog.parquet" --report "$OUT/curation.json"
/usr/bin/time -v -o "$OUT/generate.time" $MH generate "$OUT/catalog.parquet" -o "$OUT/staging" "$@"
$MH pack "$OUT/staging" -o "$OUT/dataset" --version mini-$(date +%Y%m%d) --overwrite
$MH verify "$OUT/dataset" --deep
echo "dataset: $OUT/dataset (card: $OUT/dataset/dataset_card.md)"
