# Sourced by the examples' check_mpi_run.sh scripts (CTests of data-parallel
# runs): mpi_run OUT command... empties OUT, runs the command, prints its
# output and fails unless it exited with 0 (mpi_run_keep command... the
# same without emptying a folder); then count PATTERN gives the
# number of output lines matching PATTERN (grep), and fail MESSAGE ends the
# check with exit code 1.
fail() {
  echo "check_mpi_run: $*" >&2
  exit 1
}
mpi_run() {
  rm -rf "$1"
  shift
  mpi_run_keep "$@"
}
mpi_run_keep() {
  log=$("$@" 2>&1)
  local rc=$?
  printf '%s\n' "$log"
  [ "$rc" -eq 0 ] || fail "the run exited with $rc"
}
count() { printf '%s\n' "$log" | grep -c -- "$1"; }
