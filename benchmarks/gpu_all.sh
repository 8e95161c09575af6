#!/usr/bin/env bash
# Every GPU benchmark of issues 3 and 4 from one script on the lent GPU machine (see ../shared/gpu/README.md).
#
#   once per checkout:  echo /.whl/ >> .git/info/exclude; mkdir -p .whl && cp ../shared/gpu/wheels/*.whl .whl/
#   device tool call:   command "STEPS=train bash benchmarks/gpu_all.sh", carry [".whl"]
#                       (all four steps take about 20 minutes, more than one 10-minute call and a task's
#                       15 minutes of device time: run one or two steps per task, e.g. STEPS="explain metrics")
#
# Results land in benchmarks/results/*_<gpu>.json and are copied to $OUT; commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
export XAI_HARNESS_CHECKPOINTS=/tmp/xai-ckpt XAI_HARNESS_CACHE=/tmp/xai-cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for step in ${STEPS:-explain metrics train suite}; do
  echo "=== $step"
  case $step in
    explain) python3 benchmarks/bench_explain.py ;;
    metrics) python3 benchmarks/bench_metrics.py ;;
    train)   python3 benchmarks/bench_train.py --mode gpu --compile ;;
    suite)   python3 -m harness.cli train --model resnet18 --profile gpu --no-progress \
               && python3 benchmarks/bench_suite.py --model resnet18 --profile gpu --images 1000 ;;
  esac 2>&1 | tee "$OUT/$step.log"
done
cp benchmarks/results/*.json "$OUT/" 2>/dev/null
