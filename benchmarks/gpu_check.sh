#!/usr/bin/env bash
# One prepared CUDA check of the GPU code paths (run from the repository root on a machine with a GPU):
#   1. benchmarks/bench_train_speed.py: student-training images/s with and without the fast paths;
#   2. two tiny digits grids on CUDA (fp32; bf16 + crop-flip): artifacts, inference cost, then `bench eval` of
#      every done run (stored vs recomputed on the same device) and `bench export` (ONNX, TorchScript);
#   3. with DEMO=1: `bench plan studies/demo.yaml --gpu h200`, then the demo grid itself on this GPU (timed);
#   4. benchmarks/bench_plan_throughput.py (the H200 rows of bench/plan/throughput.py) unless PLAN_BUDGET=0.
# Writes everything under ${OUT:-/tmp/gpu-check}. Needs the repo's Python dependencies importable.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
WORK=$(mktemp -d)
DB="sqlite:///$WORK/results.db"
BENCH=(python3 -m bench)
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the script on a machine without a GPU
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
    | tee "$OUT/device.txt"

echo "== 1. training throughput"
timeout 240 python3 benchmarks/bench_train_speed.py --device "$DEVICE" --budget "${SPEED_BUDGET:-110}" --json "$OUT/speed.json" \
    2>&1 | tee "$OUT/speed.txt"

echo "== 2. CUDA grids, eval, export"
start=$(date +%s)
for grid in benchmarks/gpu_check.yaml benchmarks/gpu_check_bf16.yaml; do
    timeout 240 "${BENCH[@]}" run "$grid" --db "$DB" --device "$DEVICE" --cache-dir "$WORK/cache" \
        --run-dir "$WORK/runs" 2>&1 | tail -5
done
echo "grids took $(( $(date +%s) - start )) s"
"${BENCH[@]}" sql --db "$DB" --csv "SELECT id, student, method, data_config, test_acc, latency_ms, throughput_ips, \
macs, teacher_latency_ms, speedup, epoch_seconds, train_images_per_s, device FROM runs ORDER BY id" \
    | tee "$OUT/runs.csv"
for id in $("${BENCH[@]}" sql --db "$DB" --csv "SELECT id FROM runs WHERE status = 'done'" | tail -n +2 | tr -d '\r' \
        | head -n "${EVAL_LIMIT:-99}"); do
    result=$("${BENCH[@]}" eval "$id" --db "$DB" --device "$DEVICE" --cache-dir "$WORK/cache" 2>&1); rc=$?
    echo "$result" | tail -2; echo "eval $id rc=$rc"
done | tee "$OUT/eval.txt"
for student in resnet bottleneck; do
    for fmt in ${EXPORT_FORMATS:-onnx torchscript}; do
        "${BENCH[@]}" export --best --where "student = '$student' AND study = 'gpu-check'" --format "$fmt" \
            --out "$WORK/$student.$fmt" --db "$DB" 2>&1 | tail -2
    done
done | tee "$OUT/export.txt"

if [ -n "${DEMO:-}" ]; then
    echo "== 3. the demo grid on this GPU"
    DEMO_DB="sqlite:///$WORK/demo.db"
    "${BENCH[@]}" plan studies/demo.yaml --gpu h200 --db "$DEMO_DB" 2>&1 | tee "$OUT/demo_plan.txt"
    start=$(date +%s)
    timeout "${DEMO_BUDGET:-300}" "${BENCH[@]}" run studies/demo.yaml --db "$DEMO_DB" --device "$DEVICE" \
        --cache-dir "$WORK/demo-cache" --run-dir "$WORK/demo-runs" 2>&1 | tail -3
    echo "demo grid took $(( $(date +%s) - start )) s" | tee -a "$OUT/demo_plan.txt"
    "${BENCH[@]}" sql --db "$DEMO_DB" --csv "SELECT student, method, seed, test_acc, epoch_seconds, latency_ms, \
throughput_ips, macs, speedup, teacher_pass_s FROM runs ORDER BY id" | tee "$OUT/demo_runs.csv"
fi

if [ "${PLAN_BUDGET:-120}" != 0 ]; then
    echo "== 4. plan throughput table"
    timeout "${PLAN_BUDGET:-120}" python3 benchmarks/bench_plan_throughput.py 2>&1 | tee "$OUT/plan_throughput.txt"
fi
