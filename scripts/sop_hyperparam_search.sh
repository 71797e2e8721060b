#!/usr/bin/env bash
# SOP-501: distributed hyperparameter search for one model type, with outputs in place
# for the dissertation. Usage: scripts/sop_hyperparam_search.sh xgboost [extra coord args]
#   e.g. scripts/sop_hyperparam_search.sh xgboost --sampler grid --registry registry/hardware_registry.example.yaml
set -euo pipefail
MODEL=${1:?usage: $0 MODEL [coord search options]}
shift
SEARCH_ID="${MODEL}-$(date +%Y%m%d-%H%M%S)"
RUN_DIR="${COORD_RUNS_DIR:-runs}/${SEARCH_ID}"

echo "=== Hyperparameter search: model ${MODEL}, search ${SEARCH_ID} ==="
echo "[1/3] plan"
coord plan --model "$MODEL" ${COORD_REGISTRY:+--registry "$COORD_REGISTRY"}
echo "[2/3] search"
coord search --model "$MODEL" --run-dir "$RUN_DIR" "$@"
echo "[3/3] report"
coord report "$RUN_DIR" >/dev/null
echo "results: $RUN_DIR/report/ (trials.csv, best.json, tables/*.tex)"
