#!/usr/bin/env bash
# CTest example_cifar10_experiment_mpi: runs the given command (mpirun -np 2
# ... cifar10_experiment ... --out OUT) and checks what a data-parallel run
# must give: exit code 0, rank 0's output only (the data-parallel line, the
# epoch lines of one-cycle and SWA epochs, each stage's result line, the table
# and the closing line once), and
# results.json (3 rows, 2 ranks), results.csv and report.html in OUT.
# Exit code 77 (skipped) when DATA, the unpacked images, is absent.
# Usage: check_mpi_run.sh DATA OUT command...
set -u
data=$1
out=$2
shift 2
if [ ! -d "$data/train" ]; then
  echo "SKIPPED: $data does not exist (the data_cifar10_unpack test makes it from ../shared/data)"
  exit 77
fi
. "$(dirname "$0")/../common/mpi_run_check.sh"
mpi_run "$out" "$@"
[ "$(count 'data-parallel: 2 ranks x 1 threads')" -eq 1 ] || fail "expected one line naming 2 ranks"
for stage in baseline PTQ QAT; do
  [ "$(count "^$stage: test top-1")" -eq 1 ] || fail "expected the $stage result line once"
done
[ "$(count '^epoch 1/2: train')" -eq 1 ] || fail "expected the baseline's epoch line once"
# One epoch of weight averaging: every rank averages and re-estimates BatchNorm.
[ "$(count '^epoch 2/2 (SWA): train')" -eq 1 ] || fail "expected the SWA epoch's line once"
[ "$(count '^SWA: baseline = mean of the weights after epochs 2-2')" -eq 1 ] ||
  fail "expected the SWA line once"
[ "$(count 'ms (median)')" -eq 1 ] || fail "expected the table once"
[ "$(count "^total .* wrote $out/results.json")" -eq 1 ] || fail "expected the closing line once"
for f in results.json results.csv report.html baseline.safetensors ptq.int8.safetensors \
  qat.int8.safetensors; do
  [ -s "$out/$f" ] || fail "$out/$f is missing or empty"
done
[ ! -e "$out/baseline.partial.safetensors" ] || fail "the partial checkpoint was left behind"
[ "$(grep -c '"method":' "$out/results.json")" -eq 3 ] || fail "$out/results.json: expected 3 rows"
grep -q '"ranks": 2' "$out/results.json" || fail "$out/results.json does not record 2 ranks"
echo "check_mpi_run: ok"
