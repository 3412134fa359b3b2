#!/usr/bin/env bash
# The GPU figures of the README in one go, on one CUDA GPU, sized for one device call of under 10 minutes:
#
#   benchmarks/gpu.sh CIFAR10_DIR RESULTS_DIR
#
# CIFAR10_DIR holds cifar-10-batches-py (the official files or a copy; --skip-checksum is given).
# Needs torch and torchvision; the tracker figures need wandb and neptune, each skipped if absent.
# RESULTS_DIR gets recipes.json, bench.json, e2e.jsonl and the logs; the tables go to the terminal;
# benchmarks/results/gpu.json (committed) gets every figure, keyed as the README's GPU table reads them.
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
[[ $device == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
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
#    tracker, W&B offline and Neptune offline, each with and without --compile. A tracker whose
#    client is not installed is skipped and said so.
if [[ $sections == *scripts* ]]; then
: > "$out/e2e.jsonl"
for compile in "" --compile; do
    for tracker in disabled wandb neptune; do
        script=wandb_setup_script.py mode=offline
        [[ $tracker == disabled ]] && mode=disabled
        [[ $tracker == neptune ]] && script=neptune_integration.py
        if [[ $tracker != disabled ]] && ! "$py" -c "import $tracker" 2>/dev/null; then
            echo "$tracker: not installed here, not measured"; continue
        fi
        log="$out/script-$tracker${compile:+-compile}.log"
        start=$(date +%s.%N)
        WANDB_API_KEY=${WANDB_API_KEY:-local-offline-run-key-0000000000000000000000000000000000} \
        NEPTUNE_API_TOKEN=${NEPTUNE_API_TOKEN:-local-offline-run} \
            "$py" "$root/$script" --mode "$mode" --device "$device" --data-dir "$data" --skip-checksum $compile \
            --out-dir "$out/runs" "${smoke[@]}" > "$log" 2>&1
        code=$?
        end=$(date +%s.%N)
        "$py" - "$tracker" "${compile:-no-compile}" "$code" "$start" "$end" "$log" >> "$out/e2e.jsonl" <<'PY'
import json, re, sys
tracker, compile_, code, start, end, log = sys.argv[1:]
text = open(log).read()
acc = re.findall(r"^test loss \S+ acc (\S+)", text, re.M)
print(json.dumps({"tracker": tracker, "compile": compile_ == "--compile", "exit": int(code),
                  "wall_s": round(float(end) - float(start), 2), "test_acc": float(acc[-1]) if acc else None,
                  "epochs": len(re.findall(r"^epoch \d+/", text, re.M))}))
PY
        tail -n 1 "$out/e2e.jsonl"
        rm -rf "$out/runs"  # checkpoints: gigabytes
    done
done
fi

# 3. The engine against a bare loop, tracker overhead in interleaved blocks with intervals (W&B
#    also with wandb.watch, in a phase of its own), each tool's own work, the load sweep,
#    augmentation on the device.
if [[ $sections == *bench* ]]; then
"$py" "$root/benchmarks/run.py" --device "$device" --quick --compare-watch --json \
    > "$out/bench.json" 2> >(tee "$out/bench.log" >&2)
echo "run.py: exit $?"
fi

# 4. Every figure above in one file, committed: benchmarks/results/gpu.json (GPU_JSON elsewhere).
"$py" - "$out" "${GPU_JSON:-$root/benchmarks/results/gpu.json}" "$device" "$root" <<'PY'
import json, os, sys
out, target, device, root = sys.argv[1:]
def last_json(name):
    path = os.path.join(out, name)
    lines = [l for l in open(path).read().splitlines() if l.startswith("{")] if os.path.exists(path) else []
    return json.loads(lines[-1]) if lines else {}
runs = [json.loads(l) for l in open(os.path.join(out, "e2e.jsonl"))] if os.path.exists(os.path.join(out, "e2e.jsonl")) else []
bench, recipes = last_json("bench.json"), last_json("recipes.json")
hardware = bench.get("hardware") or recipes.get("hardware")
if not hardware:  # only the scripts ran: describe the machine the same way
    sys.path.insert(0, root)
    import alexnet, torch
    hardware = alexnet.environment(torch.device(device))
result = {"device": device, "device_name": hardware.get("device_name"), "hardware": hardware, "runs": runs,
          "recipes": recipes.get("entries", []), "bench": bench}
for r in runs:
    name = {"disabled": "disabled", "wandb": "wandb_offline", "neptune": "neptune_offline"}[r["tracker"]]
    result[f"e2e_{name}{'_compile' if r['compile'] else ''}_s"] = r["wall_s"]
plain = [r for r in runs if r["tracker"] == "disabled" and not r["compile"]]
result["test_acc"] = plain[0]["test_acc"] if plain else None
result["engine_vs_bare_step_ratio"] = bench.get("engine_vs_bare_step_ratio")
for tracker in ("wandb_offline", "neptune_offline"):
    if f"e2e_{tracker}_s" in result and result.get("e2e_disabled_s"):
        result[f"{tracker}_added"] = result[f"e2e_{tracker}_s"] / result["e2e_disabled_s"] - 1
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "w") as f:
    json.dump(result, f, indent=1)
print(f"wrote {target}")
PY
