#!/usr/bin/env bash
# Every GPU measurement of issue 14 in one go, on a machine with no Rust and no network, from a
# kit small enough to travel (the device tool carries 64 MiB): stripped, xz-compressed builds,
# the teacher's config and tokenizer, and the TREC DL text.
#
#   scripts/gpu-kit.sh pack [KIT]          here: build and pack into KIT (default .kit)
#   scripts/gpu-kit.sh run [KIT] [OUT]     there: unpack, measure, write OUT/summary.md and
#                                          OUT/log.txt (OUT default: $OUT, else runs/gpu-kit)
#   scripts/gpu-kit.sh run --cpu [KIT] [OUT]   the same stages on the CPU, small, to check the
#                                          script without a GPU (needs torch + transformers)
#
# The kit holds builds of one commit: `tinyrank` (wgpu, the default build) and `tinyrank-fusion`
# (`--features gpu-fusion`: burn's fusion and autotune), and with BASELINE_REV=<rev> also
# `tinyrank-baseline`, that revision's default build, so that each change is measured against
# what it replaced in the same run. Speed needs no trained weights: the teacher is made there
# with random weights (transformers, seed 0) in the shared teacher's shape and with its
# tokenizer, and both tinyrank and PyTorch read it. Stages run in order of importance, each
# under its own time limit, and none starts once BUDGET seconds (default 540) are spent.
# Environment: BUDGET, PYTHON (run); CARGO_TARGET_DIR, FUSION_TARGET_DIR (the fusion build's
# own, default $CARGO_TARGET_DIR-fusion, so that the two builds do not rebuild each other),
# BASELINE_REV, BASELINE_SRC (its worktree, kept; default $CARGO_TARGET_DIR-baseline-src),
# TINYRANK_SHARED (pack; default ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."

pack() {
  local kit=${1:-.kit} shared=${TINYRANK_SHARED:-../shared}
  local target=${CARGO_TARGET_DIR:-target}
  local fusion_target=${FUSION_TARGET_DIR:-$target-fusion}
  set -e
  rm -rf "$kit"
  mkdir -p "$kit"
  local tmp
  tmp=$(mktemp -d)
  if [ -n "${BASELINE_REV:-}" ]; then
    # A kept worktree sharing the target directory: only the workspace's crates are rebuilt,
    # and only once.
    local src=${BASELINE_SRC:-$target-baseline-src}
    [ -d "$src" ] || git worktree add --detach "$src" "$BASELINE_REV" >/dev/null
    git -C "$src" checkout --quiet --detach "$BASELINE_REV"
    (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release)
    cp "$target/release/tinyrank" "$tmp/tinyrank-baseline"
    git rev-parse --short "$BASELINE_REV" >"$kit/baseline"
  fi
  cargo build --release
  cp "$target/release/tinyrank" "$tmp/tinyrank"
  cargo build --release --features gpu-fusion --target-dir "$fusion_target"
  cp "$fusion_target/release/tinyrank" "$tmp/tinyrank-fusion"
  (cd "$tmp" && strip tinyrank* && tar -cf - tinyrank*) | xz -T0 -9e >"$kit/bin.tar.xz"
  mkdir "$tmp/teacher"
  find "$shared/models/teacher-minilm-l6" -maxdepth 1 -type f ! -name '*.safetensors' \
    -exec cp {} "$tmp/teacher/" \;
  tar -C "$tmp" -cf - teacher | xz -T0 -9 >"$kit/teacher-shape.tar.xz"
  tar -C "$shared" -cf - data/trec-dl-2019 data/trec-dl-2020 data/trec-dl-2021 data/trec-dl-2022 |
    xz -T0 -9 >"$kit/data.tar.xz"
  # The Vulkan loader, in case the GPU machine's image lacks it (its NVIDIA driver has the ICD).
  (cd "$kit" && apt-get download libvulkan1 >/dev/null 2>&1) ||
    echo "note: libvulkan1 not packed (apt-get download failed)"
  rm -rf "$tmp"
  git rev-parse --short HEAD >"$kit/commit"
  local bytes
  bytes=$(du -cb "$kit"/* | tail -1 | cut -f1)
  echo "kit: $kit, $((bytes / 1024 / 1024)) MiB"
  if [ "$bytes" -gt $((60 * 1024 * 1024)) ]; then
    echo "the kit is $bytes bytes, over the 60 MiB that leaves room for the repository" >&2
    return 1
  fi
}

# A random-weight teacher of the shared teacher's shape, with its tokenizer.
random_teacher() {
  "$python" - "$1" <<'PY'
import sys, torch
from transformers import AutoConfig, AutoModelForSequenceClassification
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(sys.argv[1]))
model.float().save_pretrained(sys.argv[1], safe_serialization=True)
PY
}

unpack() {
  local kit=$1 dir=$2
  mkdir -p "$dir/bin" "$dir/shared/models"
  xz -dc "$kit/bin.tar.xz" | tar -C "$dir/bin" -xf - || return 1
  xz -dc "$kit/data.tar.xz" | tar -C "$dir/shared" -xf - || return 1
  xz -dc "$kit/teacher-shape.tar.xz" | tar -C "$dir/shared/models" -xf - || return 1
  mv "$dir/shared/models/teacher" "$dir/shared/models/teacher-minilm-l6"
  random_teacher "$dir/shared/models/teacher-minilm-l6" || return 1
  if ! ldconfig -p | grep -q 'libvulkan.so.1' && ls "$kit"/libvulkan1_*.deb >/dev/null 2>&1; then
    dpkg -x "$kit"/libvulkan1_*.deb "$dir/vulkan"
    export LD_LIBRARY_PATH="$dir/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=$icd
  fi
}

# stage NAME LIMIT_S COMMAND...: runs when the budget allows; stdout to the summary, stderr to
# the log.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 20 ]; then
    printf '\n## %s\n\nskipped: the budget was spent\n' "$name" >>"$summary"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local started=$SECONDS
  printf '\n## %s\n\n    %s\n\n' "$name" "$*" >>"$summary"
  echo "== $name: $*" >>"$log"
  timeout "$limit" "$@" >"$scratch/stdout" 2>>"$log"
  local status=$?
  cat "$scratch/stdout" >>"$summary"
  printf '\n(exit %s after %s s)\n' "$status" "$((SECONDS - started))" >>"$summary"
  echo "== $name: exit $status after $((SECONDS - started)) s" >>"$log"
}

run() {
  local cpu=0
  if [ "${1:-}" = --cpu ]; then
    cpu=1
    shift
  fi
  local kit=${1:-.kit} out=${2:-${OUT:-runs/gpu-kit}}
  python=${PYTHON:-python3}
  budget=${BUDGET:-540}
  scratch=$(mktemp -d)
  mkdir -p "$out"
  summary=$out/summary.md
  log=$out/log.txt
  : >"$log"
  echo "# gpu-kit $(cat "$kit/commit"), $(date -u '+%Y-%m-%d %H:%M UTC')" >"$summary"
  unpack "$kit" "$scratch/kit" >>"$log" 2>&1 || { echo "unpacking failed: see $log" >&2; return 1; }
  local bin=$scratch/kit/bin shared=$scratch/kit/shared
  export TINYRANK_SHARED=$shared PYTHONUNBUFFERED=1
  local dl19=$shared/data/trec-dl-2019 teacher=$shared/models/teacher-minilm-l6
  local dev=gpu torch=cuda batches=64,256,16 shapes=12/768,6/768,6/384,3/384,2/128 steps=5
  local queries=43 lengths=128,256 threads=16 profile_batch=64
  if [ "$cpu" = 1 ]; then
    dev=cpu torch=cpu batches=8 shapes=2/128 steps=2 queries=2 lengths=64 threads=2 profile_batch=8
  fi
  # f16 (rerank --f16) where the adapter has shader-f16; the CPU has no such path.
  local precisions=f32,f16
  [ "$cpu" = 1 ] && precisions=f32
  # Each build (and backend) as a training engine: LABEL=BINARY [distill flags].
  local builds=("wgpu=$bin/tinyrank" "fusion-pad32=$bin/tinyrank-fusion --pad-to 32")
  [ "$cpu" = 0 ] && builds+=("fusion-pad32-f16teacher=$bin/tinyrank-fusion --pad-to 32 --teacher-f16")
  [ -x "$bin/tinyrank-baseline" ] && builds=("baseline=$bin/tinyrank-baseline" "${builds[@]}")
  local train=("$python" scripts/train_compare.py --shared "$shared" --batches "$batches"
               --steps "$steps" --rounds 1 --device "$torch" --tinyrank-device "$dev"
               --threads "$threads")
  local b
  for b in "${builds[@]}"; do train+=(--tinyrank "$b"); done

  stage "machine" 60 sh -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; $bin/tinyrank bench --devices $dev --shapes 2/128 \
    --lengths 64 --repeats 1 --warmup 1 --cpu-paths burn 2>&1 | tail -3"
  stage "training side by side: Simplified TinyBERT" 300 "${train[@]}" --bf16
  stage "inference side by side (wgpu build, f32)" 150 "$python" scripts/bench_compare.py \
    --device "$torch" --tinyrank "$bin/tinyrank" --shapes "$shapes" --lengths "$lengths" \
    --rounds 1 --repeats 5 --threads "$threads"
  stage "inference: fusion build, f32 and f16" 150 "$bin/tinyrank-fusion" bench \
    --devices "$dev" --gpu-precisions "$precisions" --shapes "$shapes" --lengths "$lengths" \
    --repeats 5 --warmup 2 --cpu-paths burn
  for b in "${builds[@]}"; do
    [ "${b%%=*}" = baseline ] && continue
    local label=${b%%=*} command
    read -ra command <<<"${b#*=}"
    [[ " ${command[*]} " == *" --device "* ]] || command+=(--device "$dev")
    stage "where a step's time goes ($label, batch $profile_batch)" 60 "${command[0]}" distill \
      --steps 6 --batch-size "$profile_batch" --no-eval --no-teacher-eval --profile \
      "${command[@]:1}" --out "$scratch/profile-$label"
  done
  stage "inference in f16 (wgpu build)" 90 "$bin/tinyrank" bench --devices "$dev" \
    --gpu-precisions f16 --shapes "$shapes" --lengths "$lengths" --repeats 5 --warmup 2 \
    --cpu-paths burn
  # Issue 14's bar: real text in length buckets at least as fast as synthetic batches of its
  # mean length (DL19's top 100 at 128 tokens: 90).
  stage "teacher-sized model, synthetic pairs of DL19's mean length (fusion build)" 60 \
    "$bin/tinyrank-fusion" bench --devices "$dev" --gpu-precisions "$precisions" \
    --model "$teacher" --lengths 90 --repeats 5 --cpu-paths burn
  local pad
  for pad in 1 16 32; do
    stage "teacher-sized model on DL19 text, --pad-to $pad (fusion build)" 90 \
      "$bin/tinyrank-fusion" bench --devices "$dev" --gpu-precisions "$precisions" \
      --model "$teacher" --text "$dl19" --text-queries "$queries" --lengths 128 --pad-to "$pad" \
      --repeats 3 --cpu-paths burn
  done
  stage "teacher-sized model on DL19 text (wgpu build)" 60 "$bin/tinyrank" bench --devices "$dev" \
    --gpu-precisions "$precisions" --model "$teacher" --text "$dl19" \
    --text-queries "$queries" --lengths 128 --repeats 3 --cpu-paths burn
  stage "training side by side: Standard KD" 120 "${train[@]}" --method standard
  rm -rf "$scratch"
  echo "wrote $summary and $log"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
