#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (run as root) and runs the main demo:
# trains the EfRegressor ejection-fraction baseline on the embedded default
# data (a synthetic EchoNet-Dynamic-layout set, generated on first use into
# build/demo/synthetic_echo) and prints test MAE, RMSE and R^2 beside the
# always-predict-the-mean baseline. About ten minutes on two cores.
#
#   bash tools/demo.sh                   # the README's demo command
#   bash tools/demo.sh --epochs 3        # extra arguments go to ef_train (--help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ef_train
mkdir -p build/demo
cd build/demo
exec ../release/examples/ef_train/ef_train --out ef_train_out "$@"
