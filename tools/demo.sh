#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (run as root) and runs the main demo:
# ef_experiment --mode all on the embedded default data (a synthetic
# EchoNet-Dynamic-layout set, generated on first use into
# build/demo/synthetic_echo) in its quick configuration: the EF regressor's
# fp32 baseline beside the mean predictor, unstructured pruning at 0.5/0.8/0.9
# and channel pruning at 0.3/0.5/0.7 (each fine-tuned with its masks kept),
# PTQ and QAT int8, and prune -> PTQ. It prints the table and writes
# results.json, results.csv and report.html to build/demo/ef_experiment_out.
# About 7.5 minutes on the 2-core development VM after the build (plus ~40 s
# to generate the data the first time); docs/experiments.md has the figures.
#
#   bash tools/demo.sh                   # the README's demo command
#   bash tools/demo.sh --full            # the full configuration (ResNet-18, 16x112x112)
#   bash tools/demo.sh --help            # extra arguments go to ef_experiment
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ef_experiment
mkdir -p build/demo
cd build/demo
exec ../release/examples/ef_experiment/ef_experiment --out ef_experiment_out "$@"
