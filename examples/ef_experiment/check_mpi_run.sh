#!/usr/bin/env bash
# CTest example_ef_experiment_mpi: runs the given command (mpirun -np 2 ...
# ef_experiment --mode all ... --out OUT) and checks what a data-parallel run
# must give: exit code 0, rank 0's output only (the data-parallel line, each
# stage's row line, the table and the closing line once), and results.json
# with every row of --mode all and the rank count, results.csv and
# report.html written once in OUT. Then the same command with 2 epochs into
# OUT_resumed, killed after the baseline's first epoch
# (COMPRESSOR_TEST_KILL_AFTER_EPOCH) and run again with --resume: every rank
# continues the baseline at epoch 2 from the checkpoint.
# Usage: check_mpi_run.sh OUT command... (with --epochs 1 and --out OUT)
set -u
out=$1
shift
. "$(dirname "$0")/../common/mpi_run_check.sh"
mpi_run "$out" "$@"
[ "$(count 'data-parallel: 2 ranks x 1 threads')" -eq 1 ] || fail "expected one line naming 2 ranks"
for row in 'fp32 baseline' 'unstructured 0.5' 'unstructured 0.9' 'structured 0.5' 'PTQ int8' \
  'QAT int8' 'structured+PTQ int8' 'unstructured+PTQ int8'; do
  [ "$(count "^$row: test MAE")" -eq 1 ] || fail "expected the row line of '$row' once"
done
[ "$(count 'ms/clip')" -eq 1 ] || fail "expected the table once"
[ "$(count "^total .* wrote $out/results.json")" -eq 1 ] || fail "expected the closing line once"
for f in results.json results.csv report.html; do
  [ -s "$out/$f" ] || fail "$out/$f is missing or empty"
done
[ "$(grep -c '"method":' "$out/results.json")" -eq 9 ] ||
  fail "$out/results.json: expected 9 rows (8 models and the mean predictor)"
grep -q '"ranks": 2' "$out/results.json" || fail "$out/results.json does not record 2 ranks"

# Killed after the baseline's first epoch, resumed.
resumed_out="${out}_resumed"
args=()
prev=
for a in "$@"; do
  case "$prev" in
    --out) a=$resumed_out ;;
    --epochs) a=2 ;;
  esac
  args+=("$a")
  prev=$a
done
rm -rf "$resumed_out"
killed=$(COMPRESSOR_TEST_KILL_AFTER_EPOCH=baseline:1 "${args[@]}" 2>&1)
printf '%s\n' "$killed"
[ -f "$resumed_out/baseline.partial.safetensors" ] ||
  fail "the killed run left no $resumed_out/baseline.partial.safetensors"
[ -f "$resumed_out/baseline.safetensors" ] && fail "the killed run saved its baseline"
mpi_run_keep "${args[@]}" --resume
[ "$(count 'resume: baseline from epoch 2 of 2')" -eq 1 ] ||
  fail "expected the resumed run to continue the baseline at epoch 2, once"
[ "$(count 'epoch 1/2')" -eq 0 ] || fail "the resumed run trained epoch 1 again"
[ -f "$resumed_out/baseline.partial.safetensors" ] && fail "the partial checkpoint was not deleted"
[ "$(grep -c '"method":' "$resumed_out/results.json")" -eq 9 ] ||
  fail "$resumed_out/results.json: expected 9 rows"
echo "check_mpi_run: ok"
