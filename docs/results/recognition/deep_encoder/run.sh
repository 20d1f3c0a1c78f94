#!/bin/bash
# A deeper CNN encoder: two more conv blocks at the encoder's last resolution (3 rows x W/4),
# channels 16-32-64-96-128-128 instead of 16-32-64-96 (step cost: step_cost.py, step_cost.txt).
# Stage 1 and stage 2 otherwise as shipped; gru, relu_add, lstm in turn.
cd "$(git rev-parse --show-toplevel)"
source .venv/bin/activate
export PYTHONPATH="$(git rev-parse --show-toplevel)" NO_ALBUMENTATIONS_UPDATE=1 GRADIO_ANALYTICS_ENABLED=False OMP_NUM_THREADS=1 LD_PRELOAD=libtcmalloc_minimal.so.4
R=runs/deep
CH=(--model.recognizer.channels "[16,32,64,96,128,128]")
for cell in ${@:-gru relu_add lstm}; do
  size=""; leak=""
  [ $cell = relu_add ] && size="--model.recognizer.hidden_size 160" && leak="--model.recognizer.clip_grad_leak 0.1 --model.recognizer.clip_grad_inward true"
  /usr/bin/time -v htr fit --config configs/recipe/pretrain.yaml --model.recognizer.cell $cell $size "${CH[@]}" \
    --trainer.enable_progress_bar false --trainer.default_root_dir $R/stage1 > $R/$cell.stage1.log 2>&1
  htr export $R/stage1/$cell/version_0/checkpoints/last.ckpt $R/base-$cell.safetensors --name base-$cell >> $R/$cell.stage1.log 2>&1
  echo "$cell stage1 $(date)" >> $R/done
  /usr/bin/time -v htr fit --config configs/recipe/finetune.yaml --model.recognizer.cell $cell $size $leak "${CH[@]}" \
    --model.init_from $R/base-$cell.safetensors \
    --trainer.enable_progress_bar false --trainer.default_root_dir $R/stage2 > $R/$cell.stage2.log 2>&1
  htr export $R/stage2/$cell/version_0/checkpoints/last.ckpt $R/$cell.safetensors --name $cell \
    --lm-data configs/recipe/finetune.yaml --lm-weight 0.8 --insertion-bonus 2 > $R/$cell.export.log 2>&1
  htr evaluate --ckpt $R/$cell.safetensors --data ../shared/realdata/poilus --split val --decoders greedy beam+lm > $R/$cell.eval.txt 2>/dev/null
  echo "$cell stage2 $(date)" >> $R/done
done
