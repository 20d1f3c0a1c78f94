#!/bin/bash
# A deeper CNN encoder: two more conv blocks at the encoder's last resolution (3 rows x W/4),
# channels 16-32-64-96-128-128 instead of 16-32-64-96 (step cost: step_cost.py, step_cost.txt); both
# stages otherwise as shipped; gru, relu_add, lstm in turn (lstm was not run). From the repository
# root, in the venv:
#   docs/results/recognition/deep_encoder/run.sh [cells...]
channels=(--model.recognizer.channels "[16,32,64,96,128,128]")
for cell in ${@:-gru relu_add lstm}; do
  docs/results/recognition/two_stage.sh "$cell" runs/deep "${channels[@]}" -- "${channels[@]}"
done
