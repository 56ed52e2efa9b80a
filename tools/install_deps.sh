#!/usr/bin/env bash
# Installs the Debian 12 packages compressor needs to build, test and run its
# examples. Idempotent: packages already present are left alone.
# Usage (as root): bash tools/install_deps.sh [--with-torch] [--with-onednn]
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git clang libomp-dev
  libclang-rt-14-dev
  libeigen3-dev libstb-dev catch2 libbenchmark-dev nlohmann-json3-dev libcli11-dev
  chromium
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
  libopenmpi-dev openmpi-bin
)
for arg in "$@"; do
  case "$arg" in
    # OpenBLAS: Debian's PyTorch calls the system libblas.so.3, netlib's
    # reference BLAS unless this is installed (docs/performance.md).
    --with-torch) pkgs+=(python3-torch python3-torchvision python3-numpy libopenblas0-pthread) ;;
    --with-onednn) pkgs+=(libdnnl-dev ocl-icd-opencl-dev opencl-c-headers) ;;  # dnnl-config.cmake needs OpenCL
    *) echo "install_deps.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps.sh: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps.sh: missing packages: ${missing[*]}; run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
