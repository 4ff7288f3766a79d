#!/usr/bin/env bash
# Installs what ScaleGPT needs on a fresh Debian 12 / Ubuntu 22.04+ machine (as root or with sudo).
# Safe to run again: packages already there are skipped by apt.
#   scripts/install-deps.sh           # build tools, OpenBLAS, OpenMPI, GoogleTest, CLI11, JSON, Doxygen
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is not in Debian's main archive: install NVIDIA's packages
# for the GPU build (see docs/cuda.md); the CPU build needs none of it.
set -euo pipefail
# ccache: grading/grade.py builds every submission in a fresh copy of the course; ccache keeps the
# course library from being recompiled each time (util-linux: unshare, for the grader's sandbox).
pkgs=(build-essential cmake ninja-build ccache util-linux pkg-config python3 curl ca-certificates
      libopenblas-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin libgtest-dev libgmock-dev
      libcli11-dev nlohmann-json3-dev doxygen)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages are installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
