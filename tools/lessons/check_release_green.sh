#!/bin/sh
# The student release goes green once its lessons are done: export the release, copy the reference
# solutions into its lessons/ as a finished student would, build it with its own `make`, run its
# whole ctest suite (every test, not only the lessons) and its own grader, which must give full
# marks on the public tests. This is the release a student gets; CI runs it besides the stub run
# of ci_check.sh (which must give zero).
#
#   tools/lessons/check_release_green.sh [OUT]     (default OUT: build/release-green; ~5-10 min on 2 cores)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/release-green}
JOBS=${JOBS:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$ROOT")}
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

step "export the release and fill in its lessons from solutions/"
python3 "$ROOT/tools/lessons/export_release.py" --out "$OUT"
REL="$OUT/scalegpt-student"
n=0
for d in "$ROOT"/solutions/[0-9][0-9]_*/; do
  lesson=$(basename "$d")
  [ -d "$REL/lessons/$lesson" ] || { echo "check_release_green: the release has no lessons/$lesson"; exit 1; }
  cp -R "$d". "$REL/lessons/$lesson/"
  n=$((n + 1))
done
echo "copied the reference files of $n lessons into $REL/lessons/"
if [ -e "$REL/solutions" ] || [ -e "$REL/grading/hidden" ]; then
  echo "check_release_green: the release holds solutions/ or grading/hidden/"; exit 1
fi

step "make test in the release (its whole suite)"
(cd "$REL" && make test JOBS="$JOBS") > "$OUT/make-test.txt" 2>&1 || {
  tail -n 60 "$OUT/make-test.txt"; echo "check_release_green: make test failed in the release (log: $OUT/make-test.txt)"; exit 1; }
grep -E "tests passed|tests failed" "$OUT/make-test.txt"

step "make grade in the release: full marks on the public tests"
python3 "$REL/grading/grade.py" --course "$REL" --build-dir "$OUT/grade" --jobs "$JOBS" --expect full \
  > "$OUT/grade.txt" 2>&1 || { cat "$OUT/grade.txt"; echo "check_release_green: the release's grader did not give full marks"; exit 1; }
grep "^Score" "$OUT/grade.txt"

step "the release goes green: every test passes and the grader gives full marks ($(( $(date +%s) - start )) s)"
