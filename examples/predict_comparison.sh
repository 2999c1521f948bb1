#!/usr/bin/env bash
# The comparison of docs/predict.md: the shipped learner against 1-NN, 5-NN,
# logistic regression, a random forest and gradient boosting fitted on the
# same training rows, at 10, 50 and
# 100 training examples, mean over seeds 0–2 (each seed draws its own
# class-balanced training subset and ensemble). Prints a Markdown table.
#
#   examples/predict_comparison.sh [LEARNER] [DATA_DIR]
#
# GPICL_COMPARE=tables (or images) runs only that half; GPICL_BIN picks
# the binary (default target/release/xtask, built if missing);
# GPICL_PREDICT_ARGS adds options to every `predict` (e.g. "--ensemble 16").
#
# Needs python3 (stdlib) to make the image folders from DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
learner=${1:-models/gpicl-mnist-14px}
data=${2:-../shared/data}
folders=${TMPDIR:-/tmp}/gpicl-predict-folders
bin=${GPICL_BIN:-target/release/xtask}
[ -x "$bin" ] || cargo build --release --quiet -p xtask
only=${GPICL_COMPARE:-all}
mk() { [ -d "$folders/$1" ] || python3 examples/make_image_folders.py "$data/$2" "$folders/$1" "${@:3}" >/dev/null; }
if [ "$only" != tables ]; then
mk omniglot-10way omniglot --classes 10 --train-per-class 15 --test-per-class 5 --from-split train
mk mnist-10way mnist --classes 10 --train-per-class 20 --test-per-class 50
mk fashion-10way fashion_mnist --classes 10 --train-per-class 20 --test-per-class 50
mk cifar10-10way cifar10 --classes 10 --train-per-class 20 --test-per-class 80
fi

echo "| data | classes | test rows | train rows | gpicl | 1-NN | 5-NN | logistic regression | random forest | gradient boosting | majority |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
run() {  # name classes train-args…
  local name=$1 classes=$2; shift 2
  for n in 10 50 100; do
    local sums=(0 0 0 0 0 0 0) rows=0
    for seed in 0 1 2; do
      out=$("$bin" predict --learner "$learner" "$@" --train-rows "$n" --seed "$seed" --compare --out /dev/null ${GPICL_PREDICT_ARGS:-})
      rows=$(echo "$out" | sed -n 's/^\([0-9]*\) queries.*/\1/p')
      # The accuracy is the first number on each `accuracy` line (a
      # log-loss may follow it).
      mapfile -t acc < <(echo "$out" | awk '/^accuracy/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+$/) { print $i; break } }')
      for i in 0 1 2 3 4 5 6; do sums[$i]=$(python3 -c "print(${sums[$i]} + ${acc[$i]})"); done
    done
    {
      printf "| %s | %s | %s | %s |" "$name" "$classes" "$rows" "$n"
      for i in 0 1 2 3 4 5 6; do printf " %s |" "$(python3 -c "print(f'{${sums[$i]} / 3:.3f}')")"; done
      echo
    } | tee -a "$table_rows"
  done
}
table_rows=$(mktemp)
trap 'rm -f "$table_rows"' EXIT
if [ "$only" != images ]; then
for t in iris wine breast_cancer digits penguins image_segment auto_mpg anes96_vote shuttle; do
  classes=$(tail -n +2 "examples/tables/$t/train.csv" | awk -F, '{print $NF}' | sort -u | wc -l)
  run "$t" "$classes" --train "examples/tables/$t/train.csv" --test "examples/tables/$t/test.csv"
done
# The mean over the tables at each size, and the best of the classic
# yardsticks (k-NN, logistic regression, random forest) beside it.
echo
echo "Mean over the tables:"
echo
echo "| train rows | gpicl | 1-NN | 5-NN | logistic regression | random forest | gradient boosting | best of k-NN, LR, RF |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'|' '{ n = $5 + 0; c[n]++; for (i = 6; i <= 11; i++) s[n, i] += $i }
  END { for (n in c) { printf "| %d |", n; best = 0
          for (i = 6; i <= 11; i++) { m = s[n, i] / c[n]; printf " %.3f |", m; if (i >= 7 && i <= 10 && m > best) best = m }
          printf " %.3f |\n", best } }' "$table_rows" | sort -t'|' -k2 -n
> "$table_rows"
fi
if [ "$only" != tables ]; then
run "Omniglot (10 characters)" 10 --train "$folders/omniglot-10way"
run "MNIST" 10 --train "$folders/mnist-10way"
run "Fashion-MNIST" 10 --train "$folders/fashion-10way"
run "CIFAR-10 (grey)" 10 --train "$folders/cifar10-10way"
fi
