#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image).
# The zip's course/ folder (student release + hidden tests + full points.json) is in
# /autograder/source/course.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends cmake ninja-build g++ python3 \
  libopenblas-dev libgtest-dev nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin
# Warm the build with the stubs, so each submission recompiles only its lesson files.
python3 /autograder/source/course/grading/grade.py --course /autograder/source/course \
  --build-dir /autograder/build --jobs "$(nproc)" > /autograder/warmup.log 2>&1 || true
