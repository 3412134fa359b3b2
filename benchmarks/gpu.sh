#!/usr/bin/env bash
# The GPU figures of the README in one go, on one CUDA GPU (about 9 minutes on an H100):
#
#   benchmarks/gpu.sh CIFAR10_DIR RESULTS_DIR
#
# CIFAR10_DIR holds cifar-10-batches-py (the official files or a copy; --skip-checksum is given).
# Needs torch and torchvision; the tracker figures need wandb and neptune, each skipped if absent.
# RESULTS_DIR gets recipes.json, bench.json and the logs; the tables go to the terminal.
set -u
data=${1:?usage: benchmarks/gpu.sh CIFAR10_DIR RESULTS_DIR}
out=${2:?usage: benchmarks/gpu.sh CIFAR10_DIR RESULTS_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}        # DEVICE=cpu SMOKE="--epochs 1 --train-size 1000": a quick check of this script
read -r -a smoke <<< "${SMOKE:-}"
sections=${SECTIONS:-recipes scripts bench}  # a part of it: SECTIONS="scripts bench"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'

# 1. The recipes trained to the end with no tracker: test accuracy and the engine's wall time;
#    the default and the study first, then the variants the default was chosen from (the
#    default is sgd-0.05), then torch.compile. A time budget bounds it; entries that would not
#    fit are listed as skipped.
if [[ $sections == *recipes* ]]; then
"$py" "$root/benchmarks/recipes.py" --data-dir "$data" --skip-checksum --device "$device" --json "${smoke[@]}" \
    --sync-check --compile --time-budget "${RECIPES_BUDGET_S:-260}" \
    --recipes default study \
    --try sgd-0.02:optimizer=sgd,lr=0.02,weight_decay=5e-4,warmup_epochs=1 \
    --try adamw-1e-3:optimizer=adamw,lr=1e-3,weight_decay=0.05,warmup_epochs=1 \
    --try adam-1e-3:optimizer=adam,lr=1e-3,weight_decay=0,warmup_epochs=1 \
    --try adam-5e-4:optimizer=adam,lr=5e-4,weight_decay=0,warmup_epochs=1 \
    --try adamw-2e-3:optimizer=adamw,lr=2e-3,weight_decay=0.05,warmup_epochs=2 \
    --try sgd-0.01:optimizer=sgd,lr=0.01,weight_decay=5e-4,warmup_epochs=1 \
    > "$out/recipes.json" 2> >(tee "$out/recipes.log" >&2)
echo "recipes.py: exit $?"
fi

# 2. The user's command end to end (process start to exit), default recipe, 25 epochs: with no
#    tracker, then with W&B offline.
if [[ $sections == *scripts* ]]; then
script=wandb_setup_script.py
"$py" -c 'import wandb' 2>/dev/null || script=neptune_integration.py
for mode in disabled offline; do
    start=$(date +%s.%N)
    WANDB_API_KEY=${WANDB_API_KEY:-local-offline-run-key-0000000000000000000000000000000000} \
    NEPTUNE_API_TOKEN=${NEPTUNE_API_TOKEN:-local-offline-run} \
        "$py" "$root/$script" --mode "$mode" --device "$device" --data-dir "$data" --skip-checksum \
        --out-dir "$out/runs-$mode" "${smoke[@]}" > "$out/script-$mode.log" 2>&1
    code=$?
    echo "$script --mode $mode: exit $code, $("$py" -c "import sys, time; print(f'{time.time() - $start:.1f}')") s wall;" \
         "$(grep -E '^test loss' "$out/script-$mode.log")"
    grep -E '^epoch (1|2|25)/' "$out/script-$mode.log"
    rm -rf "$out/runs-$mode"  # checkpoints: gigabytes
done
fi

# 3. The engine against a bare loop, tracker overhead (W&B also with wandb.watch, for the
#    comparison), logging latency, augmentation on the device.
if [[ $sections == *bench* ]]; then
"$py" "$root/benchmarks/run.py" --device "$device" --quick --compare-watch --json \
    > "$out/bench.json" 2> >(tee "$out/bench.log" >&2)
echo "run.py: exit $?"
fi
