#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (run as root) and runs the test suite:
# installs the packages, configures the release preset (g++, -O3, compile
# baseline -mavx2 -mfma, warnings as errors), builds everything and runs
# every CTest test on the best ISA path of the machine (the kernel testers
# run every case on every path the CPU supports themselves, and test_isa
# checks quantized models bit-identical on every path); then the
# quantization and ISA tests once more per other supported path
# (COMPRESSOR_ISA=<path>). Tests that need ../shared/data are reported as
# skipped where it is absent.
#
#   bash tools/test.sh            # the README's test command
#   JOBS=4 bash tools/test.sh     # build parallelism (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

bash tools/install_deps.sh
cmake --preset release -DCOMPRESSOR_WERROR=ON
cmake --build --preset release -j "$jobs"
# The test presets set OMP_WAIT_POLICY=passive: two tests at a time, each
# with its OpenMP threads, would otherwise spin on 2 cores (a quarter of the
# suite's time).
ctest --preset release -j 2 --timeout 1200

# Every other path this CPU runs (test_isa's [.env] case passes only for a
# supported path).
isa_probe=build/release/tests/kernels/tests_kernels
supported() { COMPRESSOR_ISA=$1 "$isa_probe" "[.env]" > /dev/null 2>&1; }
best=scalar  # kernels::best_path()'s order of preference
for path in avx2 avx_vnni avx512 avx512_vnni; do supported "$path" && best=$path; done
for path in scalar avx2 avx_vnni avx512 avx512_vnni; do
  if [ "$path" = "$best" ]; then
    echo "=== COMPRESSOR_ISA=$path: the best path, run above"
  elif supported "$path"; then
    echo "=== quant and isa tests on COMPRESSOR_ISA=$path"
    COMPRESSOR_ISA=$path ctest --preset release -j 2 --timeout 1200 -L "quant|isa" -LE "slow|shared_data"
  else
    echo "=== COMPRESSOR_ISA=$path: not supported by this CPU, skipped"
  fi
done
