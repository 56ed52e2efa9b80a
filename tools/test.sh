#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (run as root) and runs the test suite:
# installs the packages, configures the release preset (g++, -O3 -mavx2
# -mfma, warnings as errors), builds everything and runs every CTest test.
# Tests that need ../shared/data are reported as skipped where it is absent.
#
#   bash tools/test.sh            # the README's test command
#   JOBS=4 bash tools/test.sh     # build parallelism (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

bash tools/install_deps.sh
cmake --preset release -DCOMPRESSOR_WERROR=ON
cmake --build --preset release -j "$jobs"
ctest --preset release -j 2 --timeout 1200
