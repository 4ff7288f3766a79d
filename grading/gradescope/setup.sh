#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image).
# The zip's course/ folder (student release + hidden tests + full points.json) is in
# /autograder/source/course; lessons.txt names the lessons this autograder grades (empty: all).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends cmake ninja-build g++ python3 ccache util-linux binutils \
  libopenblas-dev libgtest-dev nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin
# The unprivileged user that compiles and runs submissions (grade.py would create it too).
id sgpt-grader >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin sgpt-grader
# Warm ccache with the stubs, graded exactly as a submission is: each submission then compiles
# only its own files (the course library comes from the cache).
LESSONS=$(cat /autograder/source/lessons.txt 2>/dev/null || true)
python3 /autograder/source/course/grading/grade.py --course /autograder/source/course \
  --submission /autograder/source/course/lessons --build-dir /autograder/build ${LESSONS:+--lessons $LESSONS} \
  --jobs "$(nproc)" > /autograder/warmup.log 2>&1 || true
