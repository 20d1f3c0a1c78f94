#!/bin/bash
# The shipped two-stage recipe for one cell (MODELS.md, "Reproduce") with extra arguments for either
# stage, as the experiments here ran it: stage 1, its base model, stage 2 from that base, the export
# with the LM, and the evaluation on poilus val; logs and models in <run folder>.
# usage (from the repository root): two_stage.sh <cell> <run folder> [stage-1 args...] [-- stage-2 args...]
set -e
cell=$1; R=$2; shift 2
stage1=(); while [ $# -gt 0 ] && [ "$1" != -- ]; do stage1+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
stage2=("$@")
size=(); leak=()
if [ "$cell" = relu_add ]; then
  size=(--model.recognizer.hidden_size 160)
  leak=(--model.recognizer.clip_grad_leak 0.1 --model.recognizer.clip_grad_inward true)
fi
export NO_ALBUMENTATIONS_UPDATE=1 GRADIO_ANALYTICS_ENABLED=False OMP_NUM_THREADS=1 LD_PRELOAD=libtcmalloc_minimal.so.4
mkdir -p "$R"
last() { echo "$(ls -td "$R/$1/$cell"/version_*/ | head -1)checkpoints/last.ckpt"; }  # the newest run's
/usr/bin/time -v htr fit --config configs/recipe/pretrain.yaml --model.recognizer.cell "$cell" "${size[@]}" "${stage1[@]}" \
  --trainer.enable_progress_bar false --trainer.default_root_dir "$R/stage1" > "$R/$cell.stage1.log" 2>&1
htr export "$(last stage1)" "$R/base-$cell.safetensors" --name "base-$cell" >> "$R/$cell.stage1.log" 2>&1
/usr/bin/time -v htr fit --config configs/recipe/finetune.yaml --model.recognizer.cell "$cell" "${size[@]}" "${leak[@]}" \
  "${stage2[@]}" --model.init_from "$R/base-$cell.safetensors" \
  --trainer.enable_progress_bar false --trainer.default_root_dir "$R/stage2" > "$R/$cell.stage2.log" 2>&1
htr export "$(last stage2)" "$R/$cell.safetensors" --name "$cell" \
  --lm-data configs/recipe/finetune.yaml --lm-weight 0.8 --insertion-bonus 2 > "$R/$cell.export.log" 2>&1
htr evaluate --ckpt "$R/$cell.safetensors" --data ../shared/realdata/poilus --split val \
  --decoders greedy beam+lm > "$R/$cell.eval.txt" 2>/dev/null
