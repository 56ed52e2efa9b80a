#!/usr/bin/env bash
# CTest example_ef_experiment_mpi: runs the given command (mpirun -np 2 ...
# ef_experiment --mode all ... --out OUT) and checks what a data-parallel run
# must give: exit code 0, rank 0's output only (the data-parallel line, each
# stage's row line, the table and the closing line once), and results.json
# with every row of --mode all and the rank count, results.csv and
# report.html written once in OUT.
# Usage: check_mpi_run.sh OUT command...
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
echo "check_mpi_run: ok"
