#!/bin/sh
# A compressor checkpoint opens in PyTorch and computes the same thing there:
# export_for_pytorch saves a ResNet-18 and an input/output pair; the script
# loads the checkpoint with load_state_dict(strict=True) into its PyTorch
# ResNet-18 and compares the eval output. Prints SKIPPED (CTest reports the
# test as skipped) when PYTHON has no torch and torchvision, or EXPORTER is
# "none" (not built: PYTHON had no torch when CMake ran).
# Usage: pytorch_interop.sh EXPORTER PYTHON SCRIPT OUT_DIR
set -eu
exporter=$1 python=$2 script=$3 out=$4
if ! "$python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "SKIPPED: $python cannot import torch and torchvision"
  exit 0
fi
if [ "$exporter" = none ]; then
  echo "SKIPPED: export_for_pytorch was not built ($python had no torch when CMake ran; reconfigure)"
  exit 0
fi
mkdir -p "$out"
"$exporter" "$out"
"$python" "$script" --check-checkpoint "$out/cpp_resnet18_w025.safetensors" --model resnet18 \
  --width 0.25 --num-classes 10 --compare "$out/cpp_resnet18_w025_io.safetensors"
