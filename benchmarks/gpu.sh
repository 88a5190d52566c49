#!/usr/bin/env bash
# One GPU, under 10 minutes (590 s of part limits): bf16 matmul rate, the real-model matrix's strategies at a fixed
# token budget (tokens/s, MFU, peak memory against the dry-run estimate), full fine-tuning under FSDP2 with one
# rank under torchrun (bf16 and no mixed precision: the bytes held and the peak against the per-rank estimate, the
# gather to rank 0), eval seconds per suite and eval_overhead's harness/reference ratio on the tiny world, the rest
# on SmolLM2-135M's shape with random weights (or a model folder given as $1). Each part runs in its own process
# under its own timeout, so one that fails or hangs is reported as not run and the rest still count.
#
#   OUT=/tmp/gpu benchmarks/gpu.sh [MODEL_FOLDER]     # -> $OUT/gpu-results.md (also printed), $OUT/gpu.log
#   TOKENS=6000 BATCH=16 OUT=/tmp/gpu benchmarks/gpu.sh   # training budget and batch size per part
#
# TOKENS defaults to 6,000: on an H200 a step at the real matrix's batch (2 rows of ~70 tokens) takes 0.12-0.32 s,
# bound by the host's per-op dispatch, so 40,000 tokens ran past every 60 s training limit (RESULTS.md, 2026-12-04).
# Installs nothing from the network: only `pip install -e .` (no dependencies) when harness is not importable.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
TOKENS=${TOKENS:-6000}
BATCH=(${BATCH:+--batch-size "$BATCH"})
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

fail() { echo "gpu.sh: $*" >&2; exit 2; }
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this script needs an NVIDIA GPU and its driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG" || fail "nvidia-smi failed"
"$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
  || fail "$PY's torch has no CUDA ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1))"
if ! "$PY" -c 'import harness, strategies' 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 || fail "pip install -e . failed (see $LOG)"
fi

part() {  # part SECONDS [torchrun] ARGS...: one part under its own timeout; its failure is logged, not fatal
  local limit=$1; shift
  local run=("$PY")
  if [ "$1" = torchrun ]; then  # one process under torchrun: the process group FSDP2 needs, world size 1
    run=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1); shift
  fi
  echo "== $* (limit ${limit}s)" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "${run[@]}" benchmarks/gpu_bench.py "$@" >>"$LOG" 2>&1 \
    || echo "   failed or timed out (exit $?): see $LOG" | tee -a "$LOG"
}

MODEL=${1:-}
if [ -z "$MODEL" ]; then
  MODEL="$OUT/model-tmp"
  part 60 model --dir "$MODEL"
  NAME="SmolLM2-135M shape (Llama, 30 layers, hidden 576, 9/3 heads, MLP 1536, vocab 49152), random init"
else
  NAME="$MODEL"
fi
"$PY" - "$OUT/meta.json" "$NAME" "$TOKENS" "benchmarks/gpu.sh ${1:-}" <<'PY'
import datetime, json, sys
out, model, tokens, command = sys.argv[1:]
json.dump({"model": model, "tokens": int(tokens), "command": command.strip(),
           "date": datetime.date.today().isoformat()}, open(out, "w"))
PY
part 40 matmul --json "$OUT/matmul.json"
for s in full lora qlora adapter prefix; do
  part 60 train --strategy "$s" --model "$MODEL" --tokens "$TOKENS" "${BATCH[@]}" --json "$OUT/train-$s.json"
done
part 70 torchrun fsdp --model "$MODEL" --tokens "$TOKENS" "${BATCH[@]}" --json "$OUT/fsdp.json"
part 70 eval --model "$MODEL" --json "$OUT/eval.json"
# the harness's evaluation against lm-eval's Python API and plain transformers, both on the GPU: the shipped
# tiny world, per-item agreement checked (eval_overhead.py exits 1 on a disagreement, the table still printed)
echo "== eval_overhead --world tiny --device cuda (limit 50s)" | tee -a "$LOG"
timeout --kill-after=10 50 "$PY" benchmarks/eval_overhead.py --world tiny --device cuda --repeats 3 \
  >"$OUT/eval-overhead.txt" 2>>"$LOG" || echo "   failed, disagreed or timed out (exit $?): see $OUT/eval-overhead.txt" | tee -a "$LOG"
rm -rf "$OUT/model-tmp"  # 0.5 GB of random weights: not worth bringing back
"$PY" benchmarks/gpu_bench.py report --dir "$OUT" --output "$OUT/gpu-results.md"
if [ -s "$OUT/eval-overhead.txt" ]; then  # its table and ratio lines, beside the report's
  { echo; echo "Evaluation overhead on the GPU (\`benchmarks/eval_overhead.py --world tiny --device cuda\`):"; echo
    grep -E '^(\||ratio|per-item|tiny|smoke)' "$OUT/eval-overhead.txt"; } >>"$OUT/gpu-results.md"
fi
