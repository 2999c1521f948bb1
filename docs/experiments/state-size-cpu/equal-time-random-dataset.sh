#!/usr/bin/env bash
# LSTM vs outer-product LSTM vs Transformer at about 80K parameters, each
# meta-trained for the same wall-clock budget on 2 CPU cores, on the random
# dataset (in-context memorisation of 10 fresh image→label pairs per
# sequence), then evaluated on random and on unseen MNIST tasks.
set -euo pipefail
MINUTES=${MINUTES:-4}
COMMON=(--dataset random --num-tasks 0 --tasks-per-step 8 --seqs-per-task 8 --steps 1000000
        --set schedule.max_minutes=$MINUTES --set schedule.eval_every=0
        --set eval.tasks_per_group=8 --set eval.seqs_per_task=16 --set 'eval.datasets=random,mnist')
cargo xtask train --model lstm --hidden 86 --out runs/state-size/lstm "${COMMON[@]}"
cargo xtask train --model outer-lstm --hidden 64 --heads 1 --out runs/state-size/outer-lstm "${COMMON[@]}"
cargo xtask train --model transformer --d-model 48 --layers 2 --heads 4 --key-size 16 --out runs/state-size/transformer "${COMMON[@]}"
