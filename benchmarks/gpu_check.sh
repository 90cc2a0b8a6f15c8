#!/usr/bin/env bash
# auxopt's GPU check: the CUDA tests, the throughput benchmark with and without the compiled step,
# the methods' step cost, trials packed on one GPU and a time-boxed slice of the gpu-scale payoff
# benchmark. Sized for about 8 minutes on one H200; every part is time-boxed and its results are
# copied out as soon as it ends, so that a part killed at its limit loses only itself.
#
#   bash benchmarks/gpu_check.sh                  # on a GPU machine with auxopt installed
#   # the device machine of this project (../shared/device/README.md): prepare once, then
#   #   run  command="bash .device/remote.sh -- bash benchmarks/gpu_check.sh"  carry=[".device"]
#
# Results: benchmarks/RESULTS.md (sections on CUDA), and under $OUT when it is set (the device tool's
# output folder): RESULTS.md, one log per part, parts.txt (part, exit status, seconds), payoff-gpu.db
# (copy it over benchmarks/end_task/payoff-gpu.db to keep the runs that finished).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
BUDGET=${GPU_CHECK_SECONDS:-480}  # the whole check; the payoff slice gets what is left
START=$(date +%s)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "gpu_check: results under $OUT; budget ${BUDGET}s"

part() {  # part NAME SECONDS command...
  local name=$1 limit=$2 t0 rc; shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 20 ]; then echo "$name skipped 0" >> "$OUT/parts.txt"; echo "gpu_check: no time left for $name"; return; fi
  echo "gpu_check: $name (at most ${limit}s)"; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1; rc=$?
  echo "$name $rc $(($(date +%s) - t0))" >> "$OUT/parts.txt"
  tail -n 25 "$OUT/$name.log"
  cp benchmarks/RESULTS.md "$OUT/RESULTS.md" 2>/dev/null
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
part tests 60 $PY -m pytest -q -x $XDIST -p no:cacheprovider tests/test_fast_step.py tests/test_gpu_placement.py \
  tests/test_aang.py tests/test_grad.py tests/test_train.py
part throughput 170 $PY benchmarks/speed/train_throughput.py --models minilm --steps 60 --warmup 15 \
  --compile off,default,reduce-overhead --hf-trainer on --write
part step_cost 90 $PY benchmarks/speed/step_cost.py --scale gpu --models minilm --write
part packing 110 $PY benchmarks/speed/gpu_packing.py --workers 1,2,4,8 --steps 100 --write
# continues the committed study file (benchmarks/end_task/payoff-gpu.db); this check is its only
# runner, so runs left RUNNING by an earlier check are redone
part payoff $((BUDGET - ($(date +%s) - START) - 15)) $PY benchmarks/end_task/payoff.py --scale gpu --suites dsp \
  --rows primary-only,attittud,aang --seeds 3 --workers 8 --reset-running
cp benchmarks/end_task/payoff-gpu.db "$OUT/" 2>/dev/null
$PY benchmarks/end_task/payoff.py --scale gpu --suites dsp --report > "$OUT/payoff-report.log" 2>&1
cat "$OUT/parts.txt"
