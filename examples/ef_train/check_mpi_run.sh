#!/usr/bin/env bash
# CTest example_ef_train_mpi: runs the given command (mpirun -np 2 ... ef_train
# ... --out OUT) and checks what a data-parallel run must give: exit code 0,
# one rank's output only (each epoch line, the test table and "wrote" once,
# with 2 ranks named), and the model and results written once in OUT; with
# --sync-bn in the command, that the run says and records synchronised
# BatchNorm.
# Usage: check_mpi_run.sh OUT command...
set -u
out=$1
shift
. "$(dirname "$0")/../common/mpi_run_check.sh"
mpi_run "$out" "$@"
[ "$(count '2 rank(s) x')" -eq 1 ] || fail "expected one model line naming 2 ranks"
[ "$(count 'epoch 1/1 done')" -eq 1 ] || fail "expected the epoch line once (rank 0 only)"
[ "$(count 'always the training mean')" -eq 1 ] || fail "expected the test table once"
[ "$(count "wrote $out/model.safetensors")" -eq 1 ] || fail "expected 'wrote' once"
[ -s "$out/model.safetensors" ] || fail "$out/model.safetensors is missing or empty"
grep -q '"ranks": 2' "$out/results.json" || fail "$out/results.json does not record 2 ranks"
case " $* " in
*" --sync-bn "*)
  [ "$(count '2 rank(s) x 1 threads, synchronised BatchNorm')" -eq 1 ] ||
    fail "expected the model line to name synchronised BatchNorm"
  grep -q '"sync_bn": true' "$out/results.json" || fail "$out/results.json does not record sync_bn"
  ;;
*)
  [ "$(count 'per-rank BatchNorm')" -eq 1 ] || fail "expected the model line to name per-rank BatchNorm"
  ;;
esac
echo "check_mpi_run: ok"
