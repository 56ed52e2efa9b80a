#!/usr/bin/env bash
# CTest example_run_experiments: tools/run_experiments.sh runs both
# experiments end to end (on a few hundred CIFAR-10 images and 24 synthetic
# clips, one epoch each) and writes both reports and the index; a bad option
# and a failing run stop it with an error naming the option.
# Exit code 77 (skipped) when CIFAR_DATA, the unpacked images, is absent.
# Usage: check_run_experiments.sh SOURCE_DIR BUILD_DIR CIFAR_DATA
set -u
src=$1
build=$2
data=$3
if [ ! -d "$data/train" ]; then
  echo "SKIPPED: $data does not exist (the data_cifar10_unpack test makes it from ../shared/data)"
  exit 77
fi
fail() {
  echo "FAILED: $*"
  exit 1
}
run=(bash "$src/tools/run_experiments.sh" --bin "$build" --threads 2)
rm -rf run_out run_bad
"${run[@]}" --out run_out \
  --cifar "--data-root $data --train-size 300 --test-size 100 --calibration-size 32
           --sensitivity-size 0 --batch-size 64 --epochs 1 --qat-epochs 1 --latency-rounds 2
           --latency-seconds 0" \
  --ef "--generate 24 --frames 2 --size 32 --width 0.125 --batch-size 4 --epochs 1
        --finetune-epochs 1 --qat-epochs 1 --unstructured 0.5 --structured 0.5
        --calibration-batches 2 --latency-rounds 2 --latency-seconds 0" >run.log 2>&1 ||
  fail "the run failed: $(tail -20 run.log)"
for f in index.html cifar10.log ef.log cifar10/results.json cifar10/results.csv \
  cifar10/report.html ef/results.json ef/results.csv ef/report.html; do
  [ -s "run_out/$f" ] || fail "run_out/$f was not written"
done
grep -q '"method": *"qat"' run_out/cifar10/results.json || fail "no QAT row in cifar10/results.json"
grep -q '"method": *"mean_predictor"' run_out/ef/results.json ||
  fail "no mean predictor row in ef/results.json"
grep -q '"method": *"structured+ptq"' run_out/ef/results.json ||
  fail "no structured+ptq row in ef/results.json (not --mode all?)"
grep -q 'both experiments done' run.log || fail "no closing line"

"${run[@]}" --out run_bad --bogus >bad.log 2>&1 && fail "--bogus was accepted"
grep -q -- "unknown option '--bogus'" bad.log || fail "the error does not name --bogus"
# A failing first run stops the script with its error, before the second.
"${run[@]}" --out run_bad --cifar "--data-root $data --epochs 0" >bad.log 2>&1 &&
  fail "--epochs 0 was accepted"
grep -q -- "--epochs" bad.log || fail "the error does not name --epochs"
grep -q "== ef_experiment" bad.log && fail "ef_experiment ran after cifar10_experiment failed"
echo "PASSED"
