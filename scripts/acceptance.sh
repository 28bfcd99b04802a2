#!/usr/bin/env bash
# Issue 3's acceptance table: students of the shared teacher trained with each method on the full
# BM25 top-100 pools of TREC DL 2020-2022 and evaluated on TREC DL 2019 (top-100 reranked).
#
#   scripts/acceptance.sh [OUT_DIR]        (default runs/acceptance)
#
# Environment: TINYRANK_BIN (default target/release/tinyrank), DEVICE (gpu), TRAIN_TOP_K (100),
# AUGMENT (0: pseudo-queries of teacher-labelled augmentation added), AUGMENT_TOP_K (their
# candidates each; default TRAIN_TOP_K), VARIANTS (0: word-replaced query variants added,
# with AUGMENT_TOP_K candidates each), LR (1e-4), EVAL_TOP_K (100), SEED (42), PARALLEL (1: every run at once, which suits a GPU; 0 one after another, for a CPU),
# METHODS (labels standard tinybert simplified two-layer; also margin-mse, listwise), TEACHER (default: the shared teacher;
# a fine-tuned one from `distill --method fine-tune`, its students cut from its layers). Each run writes OUT_DIR/NAME/ (log.jsonl,
# loss.svg, results.md, student/) and OUT_DIR/NAME.log; OUT_DIR/table.md gathers the results.
set -uo pipefail
bin=${TINYRANK_BIN:-target/release/tinyrank}
out=${1:-runs/acceptance}
device=${DEVICE:-gpu}
top_k=${TRAIN_TOP_K:-100}
methods=${METHODS:-labels standard tinybert simplified two-layer}
mkdir -p "$out"

common=(--train-top-k "$top_k" --augment "${AUGMENT:-0}" --augment-variants "${VARIANTS:-0}" --lr "${LR:-1e-4}" --epochs 1
        --eval-top-k "${EVAL_TOP_K:-100}" --max-len 128 --seed "${SEED:-42}" --device "$device"
        --checkpoint-every 100)
[ -n "${TEACHER:-}" ] && common+=(--teacher "$TEACHER")
# Unset, distill gives pseudo-queries --train-top-k candidates itself.
[ -n "${AUGMENT_TOP_K:-}" ] && common+=(--augment-top-k "$AUGMENT_TOP_K")

one() {
  local name=$1 args=()
  case $name in
    simplified) args=(--method simplified) ;;  # evaluates the teacher too, for the table's 1x row
    standard) args=(--method standard --no-teacher-eval) ;;
    tinybert) args=(--method tinybert --no-teacher-eval) ;;
    labels) args=(--method labels --no-teacher-eval) ;;
    margin-mse) args=(--method margin-mse --no-teacher-eval) ;;
    listwise) args=(--method listwise --no-teacher-eval) ;;
    two-layer) args=(--method simplified --student teacher-layers:2,5 --no-teacher-eval) ;;
    *) echo "unknown run $name" >&2; return 2 ;;
  esac
  local started=$SECONDS
  "$bin" distill "${common[@]}" "${args[@]}" --out "$out/$name" >"$out/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status after $((SECONDS - started)) s" | tee -a "$out/status.txt"
}

if [ "${PARALLEL:-1}" = 1 ]; then
  # Ctrl-C or a time limit reaches every run, each of which then saves a checkpoint and stops.
  trap 'kill -INT $(jobs -p) 2>/dev/null' INT TERM
  for m in $methods; do one "$m" & done
  wait
  wait
else
  for m in $methods; do one "$m"; done
fi

{
  echo "# acceptance: teacher ${TEACHER:-shared}, train top-$top_k, augment ${AUGMENT:-0} + ${VARIANTS:-0} variants x top-${AUGMENT_TOP_K:-$top_k}, lr ${LR:-1e-4}, seed ${SEED:-42}, device $device, $(date -u +%Y-%m-%dT%H:%MZ)"
  for m in $methods; do
    echo "## $m"
    cat "$out/$m/results.md" 2>/dev/null || tail -5 "$out/$m.log"
  done
} >"$out/table.md"
cat "$out/table.md"
