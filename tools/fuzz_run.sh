#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` CMake preset: clang with
# -fsanitize=fuzzer,address,undefined) and runs every target of fuzz/
# (each fuzz/fuzz_*.cpp) for SECONDS seconds.
#
# Usage: tools/fuzz_run.sh [SECONDS] [TARGET...]     (default 30 s, all targets)
#        FUZZ_PRESET=clang-asan tools/fuzz_run.sh ...  (another preset that sets
#        COMPRESSOR_BUILD_FUZZERS=ON; CI reuses its sanitizer build this way)
#
# Per target, optional: fuzz/corpus/<target>/ seed inputs, fuzz/<target>.dict
# a libFuzzer dictionary, fuzz/<target>.options extra libFuzzer flags (one
# line). The working corpus and any crash reproducer go to build/<preset>/fuzz-run/.
# Exit status: 0 when no target crashed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "fuzz_run.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$root"/fuzz/fuzz_*.cpp; do
    [ -e "$src" ] && targets+=("$(basename "$src" .cpp)")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz_run.sh: no fuzz/fuzz_*.cpp targets" >&2
  exit 2
fi

preset=${FUZZ_PRESET:-fuzz}
cd "$root"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j2 --target "${targets[@]}"

passed=0
failed=0
failed_names=()
for t in "${targets[@]}"; do
  bin="$root/build/$preset/fuzz/$t"
  run="$root/build/$preset/fuzz-run/$t"
  mkdir -p "$run/corpus" "$run/artifacts"
  if [ -d "$root/fuzz/corpus/$t" ]; then
    cp -n "$root/fuzz/corpus/$t"/* "$run/corpus/" 2>/dev/null || true
  fi
  if [ "$t" = fuzz_cifar10 ] && [ -z "$(ls -A "$run/corpus")" ]; then
    # A seed of two records (label 3, then 9): a file of whole records.
    { printf '\003'; head -c 3072 /dev/zero; printf '\011'; head -c 3072 /dev/zero | tr '\0' '\177'; } \
      >"$run/corpus/two_records.bin"
  fi
  flags=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$run/artifacts/")
  [ -f "$root/fuzz/$t.dict" ] && flags+=(-dict="$root/fuzz/$t.dict")
  if [ -f "$root/fuzz/$t.options" ]; then
    read -r -a extra <"$root/fuzz/$t.options"
    flags+=("${extra[@]}")
  fi
  echo "== $t: ${seconds} s, flags: ${flags[*]}"
  if "$bin" "${flags[@]}" "$run/corpus" >"$run/log.txt" 2>&1; then
    passed=$((passed + 1))
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$run/log.txt" | tail -2 || true
  else
    failed=$((failed + 1))
    failed_names+=("$t")
    tail -40 "$run/log.txt"
    echo "== $t FAILED; reproducer(s): $(ls "$run/artifacts" 2>/dev/null | tr '\n' ' ')"
  fi
done

echo "fuzz: $passed passed, $failed failed${failed_names:+ (${failed_names[*]})}"
[ "$failed" -eq 0 ]
