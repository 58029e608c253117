#!/usr/bin/env bash
# GPU check: the CUDA tests (tests/test_cuda.py, and a worker forked from the worker template, tests/test_worker_template.py)
# in one go, in under 10 minutes, ending with a summary block.
#
#   bash benchmarks/gpu_check.sh        # from the repository root, on a machine with an NVIDIA GPU
#
# Time budget (each step is cut by `timeout`): nvidia-smi 15 s, tests TEST_TIMEOUT_S (240 s), benchmark
# BENCH_TIMEOUT_S (300 s; it stops starting repeats 60 s before that). Override them through the environment.
# Exit status: 0 all passed, 1 a test or the benchmark failed or timed out, 2 no CUDA device (nothing checked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python}
TEST_TIMEOUT_S=${TEST_TIMEOUT_S:-240}
BENCH_TIMEOUT_S=${BENCH_TIMEOUT_S:-300}
BENCH_BUDGET_S=$((BENCH_TIMEOUT_S > 120 ? BENCH_TIMEOUT_S - 60 : BENCH_TIMEOUT_S / 2))
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$SECONDS

# run_logged LOG LIMIT_S CMD...: run CMD under `timeout`, showing and saving its output; its exit status in $rc
run_logged() {
  local log=$1 limit=$2
  shift 2
  set +e
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
}

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 15 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu \
    --format=csv || echo "nvidia-smi failed (status $?)"
else
  echo "nvidia-smi not found"
fi
device=$(timeout 60 "$PYTHON" -c '
import torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"{name} | torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
')
echo "$device"
has_cuda=yes
[[ $device == none* ]] && has_cuda=no

echo
echo "== CUDA tests (limit ${TEST_TIMEOUT_S} s)"
run_logged "$logs/tests.log" "$TEST_TIMEOUT_S" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py tests/test_worker_template.py
test_rc=$rc
test_line=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$logs/tests.log" | tail -n 1 | tr -d '=' | xargs || true)

echo
echo "== GPU throughput (limit ${BENCH_TIMEOUT_S} s)"
run_logged "$logs/bench.log" "$BENCH_TIMEOUT_S" "$PYTHON" benchmarks/gpu_throughput.py --budget-s "$BENCH_BUDGET_S"
bench_rc=$rc

status=0
if [[ $test_rc -eq 0 ]]; then
  test_verdict=ok
elif [[ $test_rc -eq 124 || $test_rc -eq 137 ]]; then
  test_verdict="TIMED OUT after ${TEST_TIMEOUT_S} s"; status=1
else
  test_verdict="FAILED (pytest status $test_rc)"; status=1
fi
if [[ $bench_rc -eq 0 ]]; then
  bench_verdict=ok
elif [[ $bench_rc -eq 124 || $bench_rc -eq 137 ]]; then
  bench_verdict="TIMED OUT after ${BENCH_TIMEOUT_S} s"; status=1
else
  bench_verdict="FAILED (status $bench_rc)"; status=1
fi
if [[ $has_cuda == no && $status -eq 0 ]]; then
  status=2
fi

echo
echo "==================== GPU check summary ===================="
echo "device:     $device"
echo "tests:      ${test_line:-no pytest summary line} [$test_verdict]"
grep -E '^(FAILED|ERROR) ' "$logs/tests.log" | sed 's/^/              /' || true
echo "throughput: [$bench_verdict]"
if grep -q '^summary: ' "$logs/bench.log"; then
  grep '^summary: ' "$logs/bench.log" | sed 's/^summary: /              /'
else
  tail -n 3 "$logs/bench.log" | sed 's/^/              /'
fi
echo "time:       $((SECONDS - started)) s"
case $status in
  0) echo "result:     PASS" ;;
  1) echo "result:     FAIL" ;;
  2) echo "result:     NOT RUN: no CUDA device here (the tests skipped; run this on a GPU machine)" ;;
esac
exit "$status"
