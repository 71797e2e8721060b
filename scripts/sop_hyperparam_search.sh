#!/usr/bin/env bash
# SOP-501: distributed hyperparameter search for one model type, with outputs in place
# for the dissertation: plan, search, aggregate, best configuration, each through coord.
# Usage: scripts/sop_hyperparam_search.sh MODEL [coord search options]
#   e.g. scripts/sop_hyperparam_search.sh xgboost --sampler grid --registry registry/hardware_registry.example.yaml
# Every run of MODEL under the runs folder is merged into RUNS/MODEL-all (tables with a run
# column). Exits non-zero, naming the step, if any step fails.
set -euo pipefail
MODEL=${1:?usage: $0 MODEL [coord search options]}
shift
RUNS="${COORD_RUNS_DIR:-runs}"
SEARCH_ID="${MODEL}-$(date +%Y%m%d-%H%M%S)"
RUN_DIR="${RUNS}/${SEARCH_ID}"
STEP="start"
trap 'rc=$?; echo "sop_hyperparam_search: step \"${STEP}\" failed (exit ${rc}); the error is above" >&2; exit ${rc}' ERR

echo "=== Hyperparameter search: model ${MODEL}, search ${SEARCH_ID} ==="
STEP="1/4 plan"; echo "[${STEP}]"
coord plan --model "$MODEL" ${COORD_REGISTRY:+--registry "$COORD_REGISTRY"}
STEP="2/4 search"; echo "[${STEP}]"
coord search --model "$MODEL" --run-dir "$RUN_DIR" "$@"
STEP="3/4 aggregate"; echo "[${STEP}]"
coord report "$RUN_DIR" >/dev/null
coord report --name "$MODEL" --runs "$RUNS" -o "${RUNS}/${MODEL}-all" >/dev/null
STEP="4/4 best configuration"; echo "[${STEP}]"
BEST=$(coord status "$RUN_DIR" --json | python3 -c 'import json, sys; b = json.load(sys.stdin)["best_trial"]; print("" if b is None else b)')
if [ -z "$BEST" ]; then
  echo "sop_hyperparam_search: no trial of ${SEARCH_ID} completed; see ${RUN_DIR}/report/trials.csv" >&2
  exit 1
fi
coord show "$RUN_DIR" "$BEST"
echo "results: ${RUN_DIR}/report/ (trials.csv, best.json, tables/*.tex); all ${MODEL} runs: ${RUNS}/${MODEL}-all/"
echo "compare it: coord compare --from ${RUN_DIR} --seeds 3"
