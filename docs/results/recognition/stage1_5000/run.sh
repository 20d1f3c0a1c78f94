#!/bin/bash
# Stage 1 at 5,000 synthetic steps instead of 3,000 (the EPYC budget allows about 7,500), then the
# shipped stage 2 unchanged; relu_add, gru, lstm in turn. Better stage-1 bases gave better stage-2
# models in every earlier variant.
cd /work/frozen12
source /work/main/.venv/bin/activate
export PYTHONPATH=/work/frozen12 NO_ALBUMENTATIONS_UPDATE=1 GRADIO_ANALYTICS_ENABLED=False OMP_NUM_THREADS=1 LD_PRELOAD=libtcmalloc_minimal.so.4
R=/work/runs/s1long
for cell in ${@:-relu_add gru lstm}; do
  size=""; leak=""
  [ $cell = relu_add ] && size="--model.recognizer.hidden_size 160" && leak="--model.recognizer.clip_grad_leak 0.1 --model.recognizer.clip_grad_inward true"
  /usr/bin/time -v htr fit --config configs/recipe/pretrain.yaml --model.recognizer.cell $cell $size --trainer.max_steps 5000 \
    --trainer.enable_progress_bar false --trainer.default_root_dir $R/stage1 > $R/$cell.stage1.log 2>&1
  htr export $R/stage1/$cell/version_0/checkpoints/last.ckpt $R/base-$cell.safetensors --name base-$cell >> $R/$cell.stage1.log 2>&1
  echo "$cell stage1 $(date)" >> $R/done
  /usr/bin/time -v htr fit --config configs/recipe/finetune.yaml --model.recognizer.cell $cell $size $leak \
    --model.init_from $R/base-$cell.safetensors \
    --trainer.enable_progress_bar false --trainer.default_root_dir $R/stage2 > $R/$cell.stage2.log 2>&1
  htr export $R/stage2/$cell/version_0/checkpoints/last.ckpt $R/$cell.safetensors --name $cell \
    --lm-data configs/recipe/finetune.yaml --lm-weight 0.8 --insertion-bonus 2 > $R/$cell.export.log 2>&1
  htr evaluate --ckpt $R/$cell.safetensors --data ../shared/realdata/poilus --split val --decoders greedy beam+lm > $R/$cell.eval.txt 2>/dev/null
  echo "$cell stage2 $(date)" >> $R/done
done
