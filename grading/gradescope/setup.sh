#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image. Pick the Ubuntu 24.04
# base image: the course needs CMake >= 3.24 (22.04 ships 3.22). The zip's course/ folder (student
# release + hidden tests + full points.json) is in $AG/source/course; lessons.txt names the lessons
# this autograder grades (empty: all). $AG is /autograder on Gradescope; SGPT_AUTOGRADER_ROOT moves
# it (tools/lessons/check_gradescope.py runs this script in a temporary root).
set -euo pipefail
AG=${SGPT_AUTOGRADER_ROOT:-/autograder}
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends cmake ninja-build g++ python3 ccache util-linux binutils \
  libopenblas-dev libgtest-dev nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin
cmake_version=$(cmake --version | sed -n 's/^cmake version \([0-9]*\.[0-9]*\).*/\1/p')
if [ "$(printf '%s\n' 3.24 "$cmake_version" | sort -V | head -n1)" != 3.24 ]; then
  echo "setup.sh: CMake $cmake_version is too old (the course needs 3.24): choose the Ubuntu 24.04 base image" >&2
  exit 1
fi
# The unprivileged user that compiles and runs submissions (grade.py would create it too).
id sgpt-grader >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin sgpt-grader
# Warm ccache with the stubs, graded exactly as a submission is: each submission then compiles
# only its own files (the course library comes from the cache).
LESSONS=$(cat "$AG/source/lessons.txt" 2>/dev/null || true)
python3 "$AG/source/course/grading/grade.py" --course "$AG/source/course" \
  --submission "$AG/source/course/lessons" --build-dir "$AG/build" ${LESSONS:+--lessons $LESSONS} \
  --jobs "$(nproc)" > "$AG/warmup.log" 2>&1 || true
